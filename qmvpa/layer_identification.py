"""Layer identification: does a similarity measure find the corresponding layer of another network?

Kornblith et al. (2019, section 6.1 and Table 2) check a similarity index by
training the same architecture from several seeds: for every pair of networks
(A, B) and every layer ``l`` of A, the index should rate layer ``l`` of B as
the most similar of B's layers. The **accuracy** is the share of (pair, layer)
for which it does (:func:`identification_accuracy`).

Activity matrices are **units × images** (see :mod:`qmvpa`). A network is a
list of per-layer arrays on the same images; layers may have different unit
counts. :func:`layer_similarity_matrix` builds the ``layers_A × layers_B``
matrix for one pair with one of the measures in :data:`MEASURES`,
:func:`pairwise_layer_similarity` for every pair of networks. The measures:

- ``"srm_rsa"`` — SRM-aligned RSA (the paper's statistic for two networks):
  fit an SRM on the pair's fit images (layer ``l`` of A with layer ``m`` of B)
  with ``k = min(units_A, units_B, n_fit)``, map the held-out images into the
  shared space, and correlate the two-network inter-network RSM there
  (:func:`qmvpa.rsa.inter_subject_rsm`) with the mean of the two layers'
  native within-network RSMs (:func:`srm_rsa_similarity`);
- ``"native_rsa"`` — the correlation of the two layers' within-network RSMs;
- ``"cka"``, ``"cka_debiased"`` — linear CKA (:mod:`qmvpa.cka`);
- ``"procrustes"`` — angular Procrustes distance (:mod:`qmvpa.procrustes`),
  cross-validated when fit images are given; **lower is more similar**.

Every measure except Procrustes is a similarity (``MEASURES[name]`` is
``higher_is_similar``). Within-network RSMs, centred data and self-terms are
computed once per layer, not once per pair of layers.
"""

from __future__ import annotations

import logging

import numpy as np

from qmvpa._validation import as_matrix
from qmvpa import cka as _cka
from qmvpa import factor, rank_rsa, rsa
from qmvpa import procrustes as _procrustes

log = logging.getLogger(__name__)

__all__ = ["MEASURES", "identification_accuracy", "srm_rsa_similarity", "layer_similarity_matrix",
           "pairwise_layer_similarity"]

#: Measures of :func:`layer_similarity_matrix` -> whether a higher value means more similar.
MEASURES = {"srm_rsa": True, "native_rsa": True, "cka": True, "cka_debiased": True, "procrustes": False}
#: Measures that need the fit images.
_NEEDS_FIT = ("srm_rsa",)


def identification_accuracy(similarity, higher_is_similar=True, both_directions=False):
    """Share of (pair, layer) for which the corresponding layer is the most similar one.

    Parameters
    ----------
    similarity : array-like, shape (n_pairs, n_layers, n_layers) or (n_layers, n_layers)
        ``similarity[p, l, m]``: the measure between layer ``l`` of network A
        and layer ``m`` of network B of pair ``p`` (similarities or distances).
    higher_is_similar : bool, default True
        False for distances (the smallest value is the best match).
    both_directions : bool, default False
        Also count the layers of B (columns), so the result does not depend on
        which network of a pair is A.

    Returns
    -------
    accuracy : float
        In [0, 1]. A layer whose best value is shared by ``t`` layers counts
        ``1/t`` if its own layer is among them (random tie-breaking, expected);
        NaN entries never win.

    Raises
    ------
    ValueError
        Not 2-D or 3-D, or not square in the last two axes.
    """
    S = np.asarray(similarity, dtype=np.float64)
    if S.ndim == 2:
        S = S[None]
    if S.ndim != 3 or S.shape[1] != S.shape[2] or S.shape[1] < 1:
        raise ValueError(f"similarity must have shape (n_pairs, n_layers, n_layers) or "
                         f"(n_layers, n_layers), got {np.shape(similarity)}")
    S = S if higher_is_similar else -S
    S = np.where(np.isnan(S), -np.inf, S)
    mats = [S, np.swapaxes(S, 1, 2)] if both_directions else [S]
    scores = []
    for T in mats:
        best = T.max(axis=2, keepdims=True)  # (n_pairs, n_layers, 1)
        winners = T == best  # (n_pairs, n_layers, n_layers)
        own = np.diagonal(winners, axis1=1, axis2=2)  # (n_pairs, n_layers)
        scores.append(own / winners.sum(axis=2))
    return float(np.mean(scores))


def srm_rsa_similarity(a_fit, a_test, b_fit, b_test, n_iter=10, engine=factor.DEFAULT_ENGINE,
                       random_state=0, method="pearson"):
    """SRM-aligned RSA between two networks (or two layers): r(shared inter-network RSM, mean wRSM).

    Parameters
    ----------
    a_fit : array-like, shape (n_units_a, n_fit)
    b_fit : array-like, shape (n_units_b, n_fit)
        The two networks' activity on the fit images.
    a_test : array-like, shape (n_units_a, n_test)
    b_test : array-like, shape (n_units_b, n_test)
        Their activity on the held-out images.
    n_iter, engine, random_state :
        As in :func:`qmvpa.factor.fit_srm`; ``k = min(n_units_a, n_units_b, n_fit)``.
    method : {"pearson", "spearman", "kendall_tau_a"}, default "pearson"
        RSM comparison (:func:`qmvpa.rank_rsa.compare_rsms`).

    Returns
    -------
    r : float
        ``compare_rsms(inter_subject_rsm([S_a, S_b]), (wRSM(a_test) + wRSM(b_test)) / 2)``
        with ``S_a``, ``S_b`` the held-out images in the shared space.
    """
    a_test, b_test = np.asarray(a_test), np.asarray(b_test)
    wrsm = (rsa.within_rsm(a_test) + rsa.within_rsm(b_test)) / 2  # (n_test, n_test)
    return _srm_rsa(a_fit, a_test, b_fit, b_test, wrsm, n_iter, engine, random_state, method)


def _srm_rsa(a_fit, a_test, b_fit, b_test, wrsm, n_iter, engine, random_state, method):
    a_fit, b_fit = np.asarray(a_fit), np.asarray(b_fit)
    k = min(a_fit.shape[0], b_fit.shape[0], a_fit.shape[1])
    model = factor.fit_srm([a_fit, b_fit], n_components=k, n_iter=n_iter, random_state=random_state,
                           engine=engine)
    shared = factor.transform(model, [a_test, b_test])  # each (k, n_test)
    return rank_rsa.compare_rsms(rsa.inter_subject_rsm(shared), wrsm, method)


def _check_layers(layers, name, n_images=None):
    if not isinstance(layers, (list, tuple)) or len(layers) < 1:
        raise ValueError(f"{name} must be a non-empty list of per-layer (n_units, n_images) arrays, "
                         f"got {type(layers).__name__}")
    out = []
    for l, X in enumerate(layers):
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"{name}[{l}] must be 2-D (n_units, n_images), got shape {X.shape}")
        if n_images is not None and X.shape[1] != n_images:
            raise ValueError(f"{name}[{l}] has {X.shape[1]} images, expected {n_images} (every layer "
                             f"of every network must see the same images)")
        n_images = X.shape[1]
        out.append(X)
    return out


def layer_similarity_matrix(test_a, test_b, measure, fit_a=None, fit_b=None, n_iter=10,
                            engine=factor.DEFAULT_ENGINE, random_state=0, method="pearson"):
    """The measure between every layer of network A and every layer of network B.

    Parameters
    ----------
    test_a : list of array, element l of shape (n_units_a_l, n_test)
        Network A's layers on the held-out images.
    test_b : list of array, element m of shape (n_units_b_m, n_test)
        Network B's layers on the same images.
    measure : {"srm_rsa", "native_rsa", "cka", "cka_debiased", "procrustes"}
        See the module docstring.
    fit_a, fit_b : list of array, element l of shape (n_units_l, n_fit), optional
        The layers on the fit images: needed by ``"srm_rsa"``; with them
        ``"procrustes"`` is cross-validated (rotation fitted on the fit images),
        without them measured on the held-out images alone. Ignored by the
        others.
    n_iter, engine, random_state :
        SRM options for ``"srm_rsa"`` (:func:`qmvpa.factor.fit_srm`).
    method : {"pearson", "spearman", "kendall_tau_a"}, default "pearson"
        RSM comparison for ``"srm_rsa"`` and ``"native_rsa"``.

    Returns
    -------
    S : ndarray of float64, shape (n_layers_a, n_layers_b)
        ``S[l, m]`` between layer ``l`` of A and layer ``m`` of B.

    Raises
    ------
    ValueError
        Unknown measure or method, missing fit arrays for ``"srm_rsa"``, or
        arrays whose shapes do not match.
    """
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {tuple(MEASURES)}, got {measure!r}")
    if method not in rank_rsa.COMPARE_METHODS:
        raise ValueError(f"method must be one of {rank_rsa.COMPARE_METHODS}, got {method!r}")
    test_a = _check_layers(test_a, "test_a")
    test_b = _check_layers(test_b, "test_b", test_a[0].shape[1])
    if (fit_a is None) != (fit_b is None):
        raise ValueError("give both fit_a and fit_b, or neither")
    if measure in _NEEDS_FIT and fit_a is None:
        raise ValueError(f"measure {measure!r} needs the fit images: pass fit_a and fit_b")
    use_fit = fit_a is not None and measure in ("srm_rsa", "procrustes")
    if use_fit:
        fit_a = _check_layers(fit_a, "fit_a")
        fit_b = _check_layers(fit_b, "fit_b", fit_a[0].shape[1])
        for name, fits, tests in (("a", fit_a, test_a), ("b", fit_b, test_b)):
            if len(fits) != len(tests) or any(F.shape[0] != T.shape[0] for F, T in zip(fits, tests)):
                raise ValueError(f"fit_{name} and test_{name} must have the same layers with the "
                                 f"same units")
    S = np.empty((len(test_a), len(test_b)))
    if measure in ("srm_rsa", "native_rsa"):
        wa = [rsa.within_rsm(X) for X in test_a]
        wb = [rsa.within_rsm(X) for X in test_b]
        for l in range(len(test_a)):
            for m in range(len(test_b)):
                if measure == "native_rsa":
                    S[l, m] = rank_rsa.compare_rsms(wa[l], wb[m], method)
                else:
                    S[l, m] = _srm_rsa(fit_a[l], test_a[l], fit_b[m], test_b[m], (wa[l] + wb[m]) / 2,
                                       n_iter, engine, random_state, method)
    elif measure in ("cka", "cka_debiased"):
        debiased = measure == "cka_debiased"
        _cka._check_images(test_a[0].shape[1], debiased, "test_a and test_b")
        ca = [_cka._Centred(as_matrix(X, "test_a")) for X in test_a]
        cb = [_cka._Centred(as_matrix(X, "test_b")) for X in test_b]
        sa = [_cka._hsic(_cka._self_term(c), c, c, debiased) for c in ca]
        sb = [_cka._hsic(_cka._self_term(c), c, c, debiased) for c in cb]
        for l in range(len(ca)):
            for m in range(len(cb)):
                hxy = _cka._hsic(_cka._cross_term(ca[l], cb[m]), ca[l], cb[m], debiased)
                S[l, m] = _cka._ratio(hxy, sa[l], sb[m], f"layers {l}, {m}")
    else:
        na = [_procrustes._normalised(as_matrix(X, "test_a")) for X in test_a]
        nb = [_procrustes._normalised(as_matrix(X, "test_b")) for X in test_b]
        if use_fit:
            fa = [_procrustes._normalised(as_matrix(X, "fit_a")) for X in fit_a]
            fb = [_procrustes._normalised(as_matrix(X, "fit_b")) for X in fit_b]
        for l in range(len(na)):
            for m in range(len(nb)):
                if na[l] is None or nb[m] is None or (use_fit and (fa[l] is None or fb[m] is None)):
                    S[l, m] = _procrustes._nan(f"layers {l}, {m}")
                elif use_fit:
                    S[l, m] = _procrustes._angle(_procrustes._heldout_cosine(
                        _procrustes._cross(fa[l], fb[m]), _procrustes._cross(na[l], nb[m])))
                else:
                    S[l, m] = _procrustes._angle(_procrustes._same_images_cosine(na[l], nb[m]))
    return S


def pairwise_layer_similarity(tests, measure, fits=None, **options):
    """:func:`layer_similarity_matrix` for every pair of networks.

    Parameters
    ----------
    tests : list over networks of list over layers of array, shape (n_units, n_test)
        Every network's layers on the held-out images (the same images).
    measure : str
        A key of :data:`MEASURES`.
    fits : list over networks of list over layers of array, shape (n_units, n_fit), optional
        The same on the fit images (see :func:`layer_similarity_matrix`).
    **options
        ``n_iter``, ``engine``, ``random_state``, ``method`` of
        :func:`layer_similarity_matrix`.

    Returns
    -------
    pairs : ndarray of int, shape (n_pairs, 2)
        ``(i, j)``, ``i < j``, lexicographic.
    similarity : ndarray of float64, shape (n_pairs, n_layers, n_layers)
        Network ``i`` as A, ``j`` as B; feed to :func:`identification_accuracy`
        with ``higher_is_similar=MEASURES[measure]``.
    """
    if not isinstance(tests, (list, tuple)) or len(tests) < 2:
        raise ValueError("tests must be a list of at least 2 networks, each a list of layers")
    n_layers = [len(layers) for layers in tests]
    if len(set(n_layers)) > 1:
        raise ValueError(f"every network must have the same number of layers, got {n_layers}")
    if fits is not None and len(fits) != len(tests):
        raise ValueError(f"fits has {len(fits)} networks but tests has {len(tests)}")
    n = len(tests)
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n)], dtype=int)  # (n_pairs, 2)
    mats = [layer_similarity_matrix(tests[i], tests[j], measure,
                                    None if fits is None else fits[i], None if fits is None else fits[j],
                                    **options) for i, j in pairs]
    return pairs, np.stack(mats)
