"""Re-export of :mod:`nnsrm.resnet`, so the paper's ``import resnet`` keeps working from the repository root.

The code lives in nnsrm/resnet.py (installed with the package); this file is not installed.
``python resnet.py`` prints both ResNet-18 variants.
"""

from nnsrm.resnet import *  # noqa: F401,F403
from nnsrm.resnet import main

if __name__ == "__main__":
    main()
