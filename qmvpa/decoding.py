"""Decoding image labels across networks: does one network's code read another's?

Activity matrices are **units × images** (see :mod:`qmvpa`). Given every
network's response to the same labelled held-out images:

- :func:`cross_network_accuracy` — for each network ``h``, a linear classifier
  is trained on the other networks' responses (their images stacked as
  samples: ``(N - 1) * n_images`` samples) and tested on network ``h``'s
  images. In the shared space (``S_i = W_iᵀ X_i``) the features correspond
  across networks, so a decoder learnt on some networks should read the
  others. Applied to the **native** activity it is the baseline: unit ``u``
  of one network has nothing to do with unit ``u`` of another, so transfer is
  near chance (``1 / n_classes``).
- :func:`within_network_accuracy` — stratified k-fold cross-validation inside
  each network: the upper bound a transferred decoder can approach.

This is the original study's cross-network classification
(``qmvpa/classification.py`` there, ``tune_lsvc``), with one deviation: the
original grid-searched the ``C`` of a ``LinearSVC`` (``C`` in
``logspace(-5, 4, 10)``, ``class_weight="balanced"``, 3-fold
``GridSearchCV``) for every training set. Here the default classifier is
:func:`default_classifier`, a fixed ``C``: features standardised on the
training samples, then L2-regularised multinomial logistic regression with
the L-BFGS solver. It is deterministic (no random coordinate order as in
liblinear's dual solvers), needs no inner cross-validation (ten times fewer
fits than a 10-value grid), and at ``C = 1`` on standardised features it is
well regularised for a few thousand samples of up to 1,000 features. The
original's ``class_weight="balanced"`` is not used: the held-out images are a
stratified split, so the classes are balanced already. Any
scikit-learn classifier can be passed as ``estimator`` instead (e.g.
``GridSearchCV(LinearSVC(class_weight="balanced"), {"C": np.logspace(-5, 4, 10)})``
to reproduce the original exactly, ten to thirty times slower).
"""

from __future__ import annotations

import logging

import numpy as np

from qmvpa._validation import as_network_list, check_finite

log = logging.getLogger(__name__)

__all__ = ["default_classifier", "cross_network_accuracy", "within_network_accuracy",
           "DEFAULT_C", "DEFAULT_N_SPLITS"]

#: Inverse regularisation strength of :func:`default_classifier`.
DEFAULT_C = 1.0
#: Folds of :func:`within_network_accuracy`.
DEFAULT_N_SPLITS = 5


def default_classifier(C=DEFAULT_C, max_iter=1000):
    """Standardise features, then multinomial logistic regression (L-BFGS, L2, fixed ``C``).

    Parameters
    ----------
    C : float, default :data:`DEFAULT_C`
        Inverse regularisation strength.
    max_iter : int, default 1000
        L-BFGS iterations at most.

    Returns
    -------
    estimator : sklearn.pipeline.Pipeline
        Unfitted; expects samples × features (images × units), as scikit-learn does.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if isinstance(C, bool) or not isinstance(C, (int, float, np.integer, np.floating)) \
            or not np.isfinite(C) or C <= 0:
        raise ValueError(f"C must be a finite number > 0, got {C!r}")
    return make_pipeline(StandardScaler(), LogisticRegression(C=float(C), max_iter=int(max_iter)))


def _check_networks(Xs, labels, same_features):
    """Validated float arrays (units × images) and integer-coded labels."""
    Xs = as_network_list(Xs, min_networks=1, what="decoding")
    check_finite(Xs)
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D (n_images,), got shape {labels.shape}")
    n_images = [X.shape[1] for X in Xs]
    bad = [i for i, n in enumerate(n_images) if n != len(labels)]
    if bad:
        raise ValueError(f"labels has {len(labels)} entries but network {bad[0]} has {n_images[bad[0]]} "
                         f"images; pass one label per image (column)")
    classes, y = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"labels must hold at least 2 classes to decode, got {len(classes)}")
    if same_features:
        units = [X.shape[0] for X in Xs]
        if len(set(units)) > 1:
            raise ValueError(f"a decoder trained on some networks reads the others' features, so every "
                             f"network needs the same number of features (rows); got {units}")
    return Xs, y


def _clone(estimator):
    from sklearn.base import clone

    return clone(default_classifier() if estimator is None else estimator)


def cross_network_accuracy(Xs, labels, estimator=None):
    """Accuracy of a decoder trained on the other networks and tested on network ``h``, for every ``h``.

    Parameters
    ----------
    Xs : list of array, element i of shape (n_features, n_images)
        Every network's response to the same labelled images: shared responses
        (``n_features = k``) or native activity (``n_features`` = units, the
        same count in every network). At least 2 networks.
    labels : array-like, shape (n_images,)
        Label of every image (column), any hashable type.
    estimator : scikit-learn classifier, optional
        Cloned for every held-out network; default :func:`default_classifier`.

    Returns
    -------
    accuracy : ndarray of float64, shape (n_networks,)
        ``accuracy[h]``: share of network ``h``'s images whose label the
        decoder trained on the ``N - 1`` other networks predicts.

    Raises
    ------
    ValueError
        Fewer than 2 networks, a label count that differs from the image
        count, fewer than 2 classes, feature counts that differ, non-finite values.
    """
    Xs, y = _check_networks(Xs, labels, same_features=True)
    n = len(Xs)
    if n < 2:
        raise ValueError(f"cross-network decoding needs at least 2 networks (train on N-1, test on 1), "
                         f"got {n}")
    samples = [X.T for X in Xs]  # images as samples: n × (n_images, n_features)
    out = np.empty(n)
    for h in range(n):
        train_x = np.concatenate([s for i, s in enumerate(samples) if i != h])  # ((n-1)*n_images, n_features)
        train_y = np.tile(y, n - 1)
        model = _clone(estimator).fit(train_x, train_y)
        out[h] = np.mean(model.predict(samples[h]) == y)
    log.info("cross-network decoding: mean accuracy %.3f over %d held-out networks", out.mean(), n)
    return out


def within_network_accuracy(Xs, labels, n_splits=DEFAULT_N_SPLITS, random_state=0, estimator=None):
    """Stratified k-fold cross-validated accuracy inside each network (the upper bound).

    Parameters
    ----------
    Xs : list of array, element i of shape (n_features_i, n_images), or one such array
        Activity of each network (feature counts may differ).
    labels : array-like, shape (n_images,)
        Label of every image (column).
    n_splits : int, default :data:`DEFAULT_N_SPLITS`
        Folds; every class needs at least ``n_splits`` images.
    random_state : int, default 0
        Seed of the fold assignment (``StratifiedKFold(shuffle=True)``); the
        same folds in every network.
    estimator : scikit-learn classifier, optional
        Default :func:`default_classifier`.

    Returns
    -------
    accuracy : ndarray of float64, shape (n_networks,)
        Mean over folds of the held-out fold's accuracy.

    Raises
    ------
    ValueError
        A label count that differs from the image count, fewer than 2 classes,
        a class with fewer than ``n_splits`` images, ``n_splits < 2``.
    """
    from sklearn.model_selection import StratifiedKFold

    if isinstance(Xs, np.ndarray) and Xs.ndim == 2:
        Xs = [Xs]
    Xs, y = _check_networks(Xs, labels, same_features=False)
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)) or n_splits < 2:
        raise ValueError(f"n_splits must be an integer >= 2, got {n_splits!r}")
    counts = np.bincount(y)  # images per class, classes in sorted order
    if counts.min() < n_splits:
        c = int(np.argmin(counts))
        name = np.unique(np.asarray(labels))[c].item()  # a Python scalar: prints as 3, not np.int64(3)
        raise ValueError(f"class {name!r} has {counts[c]} images, fewer than n_splits = {n_splits}; "
                         f"lower n_splits or hold out more images")
    folds = list(StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state).split(
        np.zeros(len(y)), y))
    out = np.empty(len(Xs))
    for i, X in enumerate(Xs):
        samples = X.T  # (n_images, n_features)
        scores = []
        for train, test in folds:
            model = _clone(estimator).fit(samples[train], y[train])
            scores.append(np.mean(model.predict(samples[test]) == y[test]))
        out[i] = np.mean(scores)
    return out
