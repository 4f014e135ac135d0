"""Print, for a results root, what is complete, missing or corrupt in each stage, as a table.

    python status.py                                   # every condition under results/
    python status.py --root results --data digits --model conv --verify

See nnsrm/status.py for what the states mean. Reads only; exit status 0 (with
--check: 1 if any job is not complete), 2 for a bad argument.
"""

import sys

from nnsrm import cli
from nnsrm.status import main

if __name__ == "__main__":
    sys.exit(cli.run_main(main, prog="status.py"))
