"""The paper's figures for one condition, from the results of the three stages.

    python make_figures.py                                 # offline default: digits × conv, ROOT=results
    python make_figures.py --root results --data cifar10 --model conv --epoch 50 --layer dense1

The same as ``nnsrm figures``; the code is in nnsrm/commands/figures.py (--help lists the options).
"""

from nnsrm.cli import exit_process
from nnsrm.commands import run_command

if __name__ == "__main__":
    exit_process(run_command("figures", prog="make_figures.py"))
