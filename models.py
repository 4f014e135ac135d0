"""Re-export of :mod:`nnsrm.models`, so the paper's ``import models`` keeps working from the repository root.

The code lives in nnsrm/models.py (installed with the package); this file is not installed.
"""

from nnsrm.models import *  # noqa: F401,F403
