"""Stage 3: align the networks with SRM and compare their representational geometry.

    python run_analyses.py                               # offline default: digits × conv
    python run_analyses.py --data cifar10 --model conv --workers 4

The same as ``nnsrm analyse``; the code is in nnsrm/commands/analyse.py (--help lists the options).
"""

from nnsrm.cli import exit_process
from nnsrm.commands import run_command

if __name__ == "__main__":
    exit_process(run_command("analyse", prog="run_analyses.py"))
