"""Re-export of :mod:`nnsrm.config`, so the paper's ``import config`` keeps working from the repository root.

The code lives in nnsrm/config.py (installed with the package); this file is not installed.
"""

from nnsrm.config import *  # noqa: F401,F403
