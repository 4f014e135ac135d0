"""The toy simulation of Lu et al. (2018), paper Fig. 5 and Fig. 6.

One small network learns XOR; ten copies of its hidden activity are made by
permuting the hidden units or rotating them with a random orthogonal matrix
(optionally plus noise). If SRM works, the inter-network RSM in the shared space
recovers the within-network RSM (the truth), while the native-space one does not.

- :mod:`simulation.xor` — the XOR data, the 2-50-1 Keras network and its fast
  training loop, the permuted and rotated copies.
- :mod:`simulation.experiment` — one repetition, many repetitions, the tidy
  results table, run-or-load.
- :mod:`simulation.plots` — Fig. 5, Fig. 6, the noise and k sweeps.
- ``simulation/run_sim.py`` — the command line; ``simulation/run_sim.ipynb`` —
  the figures.
"""
