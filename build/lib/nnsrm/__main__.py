"""``python -m nnsrm <command> ...``, the same as the installed ``nnsrm`` command."""

import sys

from nnsrm.commands import main

sys.exit(main())
