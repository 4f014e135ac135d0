"""Re-export of :mod:`nnsrm.data_loader`, so the paper's ``import data_loader`` keeps working from the repository root.

The code lives in nnsrm/data_loader.py (installed with the package); this file is not installed.
"""

from nnsrm.data_loader import *  # noqa: F401,F403
