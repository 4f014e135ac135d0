"""What the correspondence-broken nulls of one stage-3 job cost, and what is affordable.

The nulls (:func:`qmvpa.layer_inference.infer_layer` with ``null_draws > 0``)
refit the SRM ``null_draws`` times, recompute every pair's CKA and
cross-validated Procrustes distance as often, and run the consistency's
Mantel-type test with ``n_perm`` permutations. Their cost grows with the job:
cheap for the offline demo's small layers, hours per job at the paper's scale.
:func:`null_seconds` estimates it from the job's size alone (no timing), with
the cost model below; a null is **affordable** when the estimate is at most
:data:`BUDGET_SECONDS` per job.

Cost model (one core; constants from ``bench/`` runs on the 2-core machine of
bench/RESULTS.md, good to a factor of about 2): with ``N`` networks, ``u``
units, ``k`` shared features, ``m`` fit and ``t`` held-out images and
``P = N(N-1)/2`` pairs,

- one SRM refit: ``N · n_iter · (4 u k m + 30 u k²)`` flops (the products and
  the polar steps' SVDs);
- one CKA draw: ``P · 2 u² t``; one Procrustes draw: ``P · (2 u² m + 30 u³)``;
- at :data:`FLOPS_PER_SECOND`; and the consistency test, ``n_perm · N · 3 t²``
  values gathered at :data:`VALUES_PER_SECOND`.
"""

from __future__ import annotations

#: Sustained rate of the SRM, CKA and Procrustes work on one core (flops per second).
FLOPS_PER_SECOND = 5e10
#: Values gathered per second by the permutation tests on one core.
VALUES_PER_SECOND = 1e9
#: The largest estimated cost of one job's nulls that runs without ``--force`` (seconds).
BUDGET_SECONDS = 20.0


def null_seconds(n_networks: int, n_units: int, k: int, n_fit: int, n_test: int, n_iter: int,
                 null_draws: int, n_perm: int) -> float:
    """Estimated seconds (one core) of one job's correspondence-broken nulls (see the module docstring)."""
    N, u, m, t = int(n_networks), int(n_units), int(n_fit), int(n_test)
    pairs = N * (N - 1) / 2
    refit = N * n_iter * (4.0 * u * k * m + 30.0 * u * k * k)
    cka = pairs * 2.0 * u * u * t
    procrustes = pairs * (2.0 * u * u * m + 30.0 * u ** 3)
    flops = null_draws * (refit + cka + procrustes)
    return flops / FLOPS_PER_SECOND + n_perm * N * 3.0 * t * t / VALUES_PER_SECOND


def affordable_draws(n_networks: int, n_units: int, k: int, n_fit: int, n_test: int, n_iter: int,
                     n_perm: int) -> int:
    """The most null draws of one job that stay within :data:`BUDGET_SECONDS` (0 if none do)."""
    fixed = null_seconds(n_networks, n_units, k, n_fit, n_test, n_iter, 0, n_perm)
    per_draw = null_seconds(n_networks, n_units, k, n_fit, n_test, n_iter, 1, n_perm) - fixed
    if fixed > BUDGET_SECONDS or per_draw <= 0:
        return 0
    return int((BUDGET_SECONDS - fixed) // per_draw)


def is_affordable(n_networks: int, n_units: int, k: int, n_fit: int, n_test: int, n_iter: int,
                  null_draws: int, n_perm: int) -> bool:
    """True if the nulls' estimated cost is at most :data:`BUDGET_SECONDS`."""
    return null_seconds(n_networks, n_units, k, n_fit, n_test, n_iter, null_draws, n_perm) <= BUDGET_SECONDS
