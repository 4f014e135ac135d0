"""Preprocessing before alignment: the fit/held-out split, per-image z-scoring, unit subsampling.

Activity matrices are **units × images** (see :mod:`qmvpa`). These functions
implement the first steps of every analysis (docs/analyses.md):

1. :func:`subsample_units` — keep at most ``max_units`` units, chosen at random
   with a seed, so a big layer costs no more than a 1,000-unit one;
2. :func:`stratified_split` — split the images into a fit set (for SRM) and a
   held-out set, stratified by label, the held-out images sorted by label so
   that RSMs show class blocks;
3. :func:`zscore_images` — z-score each image's activity vector across units.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["stratified_split", "zscore_images", "subsample_units"]


def stratified_split(labels, test_size=0.2, random_state=0, class_order=None):
    """Split image indices into a fit set and a held-out set, stratified by label.

    Parameters
    ----------
    labels : array-like of int, shape (n_images,)
        Class label of every image.
    test_size : float in (0, 1) or int, default 0.2
        Share (float) or number (int) of images held out.
    random_state : int, default 0
        Seed of the split (scikit-learn's ``train_test_split``).
    class_order : sequence of int, optional
        Order in which classes appear in the held-out set, e.g.
        ``(2, 3, 4, 5, 6, 7, 0, 8, 1, 9)`` to group CIFAR-10's animals and
        vehicles. It must list every label present exactly once. Default:
        ascending label.

    Returns
    -------
    fit_idx : ndarray of int, shape (n_fit,)
        Indices of the fit images, ascending.
    test_idx : ndarray of int, shape (n_test,)
        Indices of the held-out images, sorted by class (in ``class_order``),
        ties by index, so the result is deterministic.

    Raises
    ------
    ValueError
        If ``labels`` is not 1-D, ``test_size`` is out of range, a class has
        fewer than 2 images, or ``class_order`` does not list each label once.
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D (n_images,), got shape {labels.shape}")
    n = labels.shape[0]
    if isinstance(test_size, (float, np.floating)):
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"test_size must be a fraction in (0, 1) or a number of images, got {test_size}")
    elif isinstance(test_size, (int, np.integer)) and not isinstance(test_size, bool):
        if not 0 < test_size < n:
            raise ValueError(f"test_size must be between 1 and n_images - 1 = {n - 1}, got {test_size}")
    else:
        raise ValueError(f"test_size must be a float in (0, 1) or an int, got {test_size!r}")
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min(initial=n) < 2:
        rare = classes[counts < 2].tolist()
        raise ValueError(f"every class needs at least 2 images for a stratified split; "
                         f"class(es) {rare} have fewer")
    rank = _class_rank(classes, class_order)
    idx = np.arange(n)
    try:
        fit_idx, test_idx = train_test_split(idx, test_size=test_size, random_state=random_state,
                                             stratify=labels)
    except ValueError as err:  # e.g. fewer held-out images than classes
        raise ValueError(f"cannot split {n} images of {classes.size} classes with test_size="
                         f"{test_size}: {err}; use a larger test_size") from None
    fit_idx = np.sort(fit_idx)
    # Sort the held-out images by class rank, ties by index (lexsort: last key is primary).
    class_rank = rank[np.searchsorted(classes, labels[test_idx])]
    test_idx = test_idx[np.lexsort((test_idx, class_rank))]
    return fit_idx, test_idx


def _class_rank(classes, class_order):
    """Rank of each class (aligned with sorted ``classes``) in ``class_order``."""
    if class_order is None:
        return np.arange(classes.size)
    order = np.asarray(class_order).ravel()
    if np.unique(order).size != order.size:
        raise ValueError(f"class_order lists a class twice: {order.tolist()}")
    missing = np.setdiff1d(classes, order)
    if missing.size:
        raise ValueError(f"class_order {order.tolist()} lacks the label(s) {missing.tolist()} "
                         f"present in labels; list every class once")
    position = {c: i for i, c in enumerate(order.tolist())}
    return np.array([position[c] for c in classes.tolist()])


def zscore_images(X, dtype=None, unit_norm=False):
    """Z-score each image's activity vector across units.

    Parameters
    ----------
    X : array-like, shape (n_units, n_images)
        Activity of one network.
    dtype : numpy dtype, optional
        Output type; default: ``X``'s floating type (float64 for integers).
    unit_norm : bool, default False
        Scale each centred column to unit length instead of unit standard
        deviation (the z-scores divided by ``sqrt(n_units)``), so that
        ``A.T @ B`` of two such matrices is their column correlation matrix.

    Returns
    -------
    Z : ndarray, shape (n_units, n_images)
        Every column has mean 0 and (population, ``ddof=0``) standard
        deviation 1 across units. A column that is constant (e.g. an image no
        unit responds to) becomes all zeros, as scikit-learn's
        ``StandardScaler`` does, rather than NaN.

    Raises
    ------
    ValueError
        If ``X`` is not 2-D or has fewer than 2 units.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_units, n_images), got shape {X.shape}")
    if X.shape[0] < 2:
        raise ValueError(f"X needs at least 2 units to z-score across units, got {X.shape[0]}")
    if dtype is None:
        dtype = X.dtype if np.issubdtype(X.dtype, np.floating) else np.float64
    Z = np.array(X, dtype=dtype, copy=True)  # (n_units, n_images)
    Z -= Z.mean(axis=0, keepdims=True)
    reduce = np.sum if unit_norm else np.mean
    sd = np.sqrt(reduce(np.square(Z), axis=0, keepdims=True))  # (1, n_images)
    flat = sd <= np.finfo(dtype).tiny
    if flat.any():
        log.debug("zscore_images: %d constant image column(s) set to zero", int(flat.sum()))
        sd[flat] = 1.0
    Z /= sd
    return Z


def subsample_units(n_units, max_units, random_state=0):
    """Indices of at most ``max_units`` of ``n_units`` units, chosen at random without replacement.

    Parameters
    ----------
    n_units : int
        Units in the layer.
    max_units : int or None
        Cap; ``None`` keeps every unit.
    random_state : int, default 0
        Seed; the same seed gives the same units.

    Returns
    -------
    idx : ndarray of int, shape (min(n_units, max_units),)
        Sorted unit indices (all of ``range(n_units)`` if under the cap).
    """
    n_units = int(n_units)
    if n_units < 1:
        raise ValueError(f"n_units must be >= 1, got {n_units}")
    if max_units is None or n_units <= max_units:
        return np.arange(n_units)
    if int(max_units) < 1:
        raise ValueError(f"max_units must be >= 1 (or None for no cap), got {max_units}")
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n_units, size=int(max_units), replace=False))
