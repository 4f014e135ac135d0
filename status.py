"""Print, for a results root, what is complete, missing or corrupt in each stage, as a table.

    python status.py                                   # every condition under results/
    python status.py --root results --data digits --model conv --verify

The same as ``nnsrm status``; the code is in nnsrm/status.py (--help lists the options).
"""

from nnsrm.cli import exit_process
from nnsrm.commands import run_command

if __name__ == "__main__":
    exit_process(run_command("status", prog="status.py"))
