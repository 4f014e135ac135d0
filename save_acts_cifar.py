"""Stage 2: save every subject's hidden activity on the test images at every logged epoch.

    python save_acts_cifar.py                          # offline default: digits × conv
    python save_acts_cifar.py --data cifar10 --model conv --data-dir ~/datasets

The same as ``nnsrm extract``; the code is in nnsrm/commands/extract.py (--help lists the options).
"""

from nnsrm.cli import exit_process
from nnsrm.commands import run_command

if __name__ == "__main__":
    exit_process(run_command("extract", prog="save_acts_cifar.py"))
