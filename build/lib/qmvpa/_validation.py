"""Input checks shared by the qmvpa modules (one place, one wording).

Every check raises ``ValueError`` naming the argument, what was expected and
what was received. :mod:`qmvpa.srm` keeps its own checks on purpose: it raises
exactly the exception types BrainIAK's SRM raises, as a drop-in replacement.
"""

from __future__ import annotations

import numpy as np


def as_matrix(X, name: str = "X") -> np.ndarray:
    """``X`` as a 2-D floating array (integers become float64; no copy otherwise).

    Parameters
    ----------
    X : array-like, shape (n_units, n_images)
    name : str
        How the argument is called in error messages.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_units, n_images), got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.floating):
        if not np.issubdtype(X.dtype, np.number) or np.iscomplexobj(X):
            raise ValueError(f"{name} must hold real numbers, got dtype {X.dtype}")
        X = X.astype(np.float64)
    return X


def as_network_list(Xs, min_networks: int = 2, name: str = "Xs", what: str = "this analysis") -> list:
    """Several networks' activity on the same images, as a list of 2-D float arrays.

    Parameters
    ----------
    Xs : list of array-like, element i of shape (n_units_i, n_images), or array (n_networks, n_units, n_images)
        One activity matrix per network (subject).
    min_networks : int
        Fewest networks accepted.
    name, what : str
        The argument's name and the analysis it is for, in error messages.

    Returns
    -------
    list of ndarray
        Element i of shape (n_units_i, n_images).
    """
    if isinstance(Xs, np.ndarray) and Xs.ndim == 3:
        Xs = list(Xs)
    if not isinstance(Xs, (list, tuple)):
        raise ValueError(f"{name} must be a list of (n_units, n_images) arrays, one per network; "
                         f"got {type(Xs).__name__}")
    if len(Xs) < min_networks:
        raise ValueError(f"{what} needs at least {min_networks} networks (subjects), got {len(Xs)}")
    Xs = [as_matrix(X, name=f"{name}[{i}]") for i, X in enumerate(Xs)]
    n_images = [X.shape[1] for X in Xs]
    if len(set(n_images)) > 1:
        raise ValueError(f"every network must see the same images; image counts differ: {n_images}")
    return Xs


def check_same_units(Xs, what: str) -> None:
    """Raise unless every network in ``Xs`` (list of (n_units_i, n_images)) has the same units."""
    units = [X.shape[0] for X in Xs]
    if len(set(units)) > 1:
        raise ValueError(f"{what} averages activity vectors across networks, so every network needs "
                         f"the same number of units; got {units}")


def check_finite(Xs, name: str = "Xs") -> None:
    """Raise if any array in ``Xs`` (list of arrays) holds NaN or Inf."""
    for i, X in enumerate(Xs):
        if not np.all(np.isfinite(X)):
            raise ValueError(f"{name}[{i}] contains NaN or Inf values; the analyses need finite activity")
