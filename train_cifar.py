"""Stage 1: train N copies of a network that differ only in their random seed.

    python train_cifar.py                              # offline default: digits × conv
    python train_cifar.py --data cifar10 --model conv --data-dir ~/datasets

The same as ``nnsrm train``; the code is in nnsrm/commands/train.py (--help lists the options).
"""

from nnsrm.cli import exit_process
from nnsrm.commands import run_command

if __name__ == "__main__":
    exit_process(run_command("train", prog="train_cifar.py"))
