"""Run the XOR simulation (paper Fig. 5 and Fig. 6) and write its tidy results table.

    python simulation/run_sim.py
    python simulation/run_sim.py --noise-sweep --k-sweep --figures

The same as ``nnsrm simulate``; the code is in nnsrm/commands/simulate.py and
nnsrm/simulation/ (--help lists the options).
"""

from nnsrm.cli import exit_process
from nnsrm.commands import run_command

if __name__ == "__main__":
    exit_process(run_command("simulate", prog="run_sim.py"))
