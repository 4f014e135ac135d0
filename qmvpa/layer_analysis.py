"""One layer of several networks, end to end: z-score, SRM, shared space, variance explained, RSMs.

:func:`analyse_layer` is the science of one stage-3 job as a pure function:
arrays in, a dict of arrays out, no files. The pipeline (:mod:`nnsrm.analysis`)
reads the activations, splits the images, calls it and writes what it returns;
a notebook can call it directly on arrays made anywhere.

Steps, for N networks with activity ``X_i`` (units × images) on the same fit
and held-out images:

1. z-score each image's activity vector across units (per network, fit and
   held-out images separately: each image is normalised on its own);
2. fit SRM on the fit images, ``X_i ≈ W_i S`` (k shared features; by default
   k = units, an orthogonal map that keeps the whole geometry);
3. map the held-out images into the shared space, ``S_i = W_iᵀ X_i``;
4. variance explained, ``1 − mean((W_i S̄ − X_i)²) / var(X_i)`` with
   ``S̄ = mean_j W_jᵀ X_j`` over all networks (network i included, as the
   paper did), on the fit and on the held-out images;
5. RSMs of the held-out images: within-network (wRSM, mean over networks) and
   leave-one-out inter-network (iRSM), in the native and the shared space;
   r(shared iRSM, native wRSM), r(native iRSM, native wRSM), and consistency
   (r between every pair of networks' native wRSMs);
6. unless ``infer=False``, the cross-checks, nulls and intervals over networks
   of :func:`qmvpa.layer_inference.infer_layer` (rank RSA, CKA, Procrustes,
   decoding, ISC, Mantel tests, correspondence-broken nulls, jackknife or
   bootstrap intervals), and the leave-one-out variance explained with
   ``S̄_{-i}``, the mean over the *other* networks
   (:func:`qmvpa.factor.variance_explained_leave_one_out`).
"""

from __future__ import annotations

import logging

import numpy as np

from qmvpa import factor, layer_inference, preproc, rsa
from qmvpa._validation import as_network_list

log = logging.getLogger(__name__)

__all__ = ["analyse_layer", "zscore_networks"]


def zscore_networks(Xs, dtype=np.float32) -> list:
    """Z-score every image of every network across units (see :func:`qmvpa.preproc.zscore_images`).

    Parameters
    ----------
    Xs : list of array, element i of shape (n_units_i, n_images)
    dtype : numpy dtype
        Output type.

    Returns
    -------
    list of ndarray, element i of shape (n_units_i, n_images)
    """
    return [preproc.zscore_images(X, dtype=dtype) for X in Xs]


def analyse_layer(fit, test, *, n_components=None, n_iter=10, random_state=0, engine=factor.DEFAULT_ENGINE,
                  standardize=True, labels=None, reference_test=None, is_reference=False, infer=True,
                  measures=layer_inference.MEASURES, n_perm=1000, null_draws=0, interval="jackknife",
                  n_boot=2000, confidence=0.95) -> dict:
    """SRM alignment and RSA of one layer across networks (the module docstring lists the steps).

    Parameters
    ----------
    fit : list of array, element i of shape (n_units, n_fit)
        Network i's activity on the images SRM is fitted on.
    test : list of array, element i of shape (n_units, n_test)
        Network i's activity on the held-out images, in the same order for
        every network (e.g. sorted by class).
    n_components : int, optional
        Shared features k; default ``min(n_units, n_fit)``.
    n_iter : int, default 10
        SRM iterations (BrainIAK's default).
    random_state : int, default 0
        Seed of SRM's initial maps, and of every permutation and resample.
    engine : {"fast", "jax", "brainiak"}
        SRM implementation, see :func:`qmvpa.factor.fit_srm`. ``"brainiak"``
        fits in float64, the others in float32.
    standardize : bool, default True
        Z-score each image across units first (step 1). Pass False for data
        already z-scored.
    labels : array of int, shape (n_test,), optional
        Classes of the held-out images (decoding needs them).
    reference_test : list of array, element i of shape (n_units_ref, n_test), optional
        The same networks' held-out activity at a reference checkpoint (the
        final epoch), for the ``*_final_wrsm`` comparisons; z-scored like ``test``.
    is_reference : bool, default False
        This checkpoint is the reference: its ``*_final_wrsm`` comparisons are
        the same-checkpoint ones.
    infer : bool, default True
        Step 6 (:func:`qmvpa.layer_inference.infer_layer`).
    measures, n_perm, null_draws, interval, n_boot, confidence
        Passed to :func:`qmvpa.layer_inference.infer_layer`.

    Returns
    -------
    dict
        ``k`` (int); ``native_test`` (N, u, t) float32, the z-scored held-out
        activity; ``shared_test`` (N, k, t) float32; ``W`` (N, u, k) float32;
        ``S`` (k, m) float32, SRM's shared response of the fit images; ``mu``
        (N, u) float32, the unit means SRM removed (zeros if none);
        ``var_exp_fit``, ``var_exp_test`` (N,) float64 with S̄ as in step 4;
        ``var_exp_fit_loo``, ``var_exp_test_loo`` (N,) float64 with
        ``S̄_{-i}``; ``var_exp_fit_model`` (N,) float64, SRM's own
        reconstruction ``W_i S + mu_i`` of the fit images; ``wrsm_native``,
        ``wrsm_shared``, ``irsm_native``, ``irsm_shared`` (t, t) float32;
        ``r_shared_irsm_wrsm``, ``r_native_irsm_wrsm`` (floats);
        ``consistency_pairs`` (P, 2) int, network indices i < j, and
        ``consistency`` (P,) float64; with ``infer``, everything
        :func:`qmvpa.layer_inference.infer_layer` returns.

    Raises
    ------
    ValueError
        Fewer than 2 networks, networks whose unit or image counts differ,
        non-finite values, a ``k`` that does not fit, or bad inference options.
    """
    fit = as_network_list(fit, min_networks=2, name="fit", what="an inter-network analysis")
    test = as_network_list(test, min_networks=2, name="test", what="an inter-network analysis")
    if len(fit) != len(test):
        raise ValueError(f"fit has {len(fit)} networks but test has {len(test)}; pass both for every network")
    units = [X.shape[0] for X in fit]
    for i, (Xf, Xt) in enumerate(zip(fit, test)):
        if Xt.shape[0] != Xf.shape[0]:
            raise ValueError(f"network {i} has {Xf.shape[0]} units in fit but {Xt.shape[0]} in test")
    if len(set(units)) > 1:
        raise ValueError(f"every network needs the same number of units (the inter-network RSMs average "
                         f"activity vectors across networks); got {units}")
    if reference_test is not None:
        reference_test = as_network_list(reference_test, min_networks=2, name="reference_test",
                                         what="a reference checkpoint")
        if len(reference_test) != len(test) or reference_test[0].shape[1] != test[0].shape[1]:
            raise ValueError(f"reference_test must hold the same {len(test)} networks on the same "
                             f"{test[0].shape[1]} held-out images")
    n_fit = fit[0].shape[1]
    k = min(units[0], n_fit) if n_components is None else n_components
    fit_dtype = np.float64 if engine == "brainiak" else np.float32
    if standardize:
        fit = zscore_networks(fit, dtype=fit_dtype)  # each (u, m)
        test = zscore_networks(test, dtype=np.float32)  # each (u, t)
    else:
        fit = [X.astype(fit_dtype, copy=False) for X in fit]
        test = [X.astype(np.float32, copy=False) for X in test]

    srm = factor.fit_srm(fit, n_components=k, n_iter=n_iter, random_state=random_state, engine=engine)
    mu = getattr(srm, "mu_", None)
    # On the fit images, the same estimator as on the held-out ones (S̄, the mean of the mapped
    # networks), so the two numbers differ only by how well the maps generalise.
    shared_fit = factor.transform(srm, fit)  # each (k, m)
    var_exp_fit = factor.variance_explained(fit, srm.w_, np.mean(shared_fit, axis=0))
    var_exp_fit_loo = factor.variance_explained_leave_one_out(fit, srm.w_, shared_fit)
    var_exp_fit_model = factor.variance_explained(fit, srm.w_, srm.s_, mu=mu)
    del shared_fit
    shared = [S.astype(np.float32) for S in factor.transform(srm, test)]  # each (k, t)
    var_exp_test = factor.variance_explained(test, srm.w_, np.mean(shared, axis=0))
    var_exp_test_loo = factor.variance_explained_leave_one_out(test, srm.w_, shared)

    wrsms = np.stack([rsa.within_rsm(X) for X in test])  # (N, t, t)
    wrsm_native = wrsms.mean(axis=0)
    pairs, consistency = rsa.pairwise_consistency(wrsms)
    wrsm_shared = rsa.mean_within_rsm(shared)
    irsm_native = rsa.inter_subject_rsm(test)
    irsm_shared = rsa.inter_subject_rsm(shared)
    n = len(test)
    out = dict(
        k=int(srm.w_[0].shape[1]),
        native_test=np.stack(test), shared_test=np.stack(shared),
        W=np.stack([np.asarray(w, np.float32) for w in srm.w_]), S=np.asarray(srm.s_, dtype=np.float32),
        mu=(np.stack([np.asarray(m, np.float32) for m in mu]) if mu is not None
            else np.zeros((n, units[0]), np.float32)),
        var_exp_fit=var_exp_fit, var_exp_test=var_exp_test, var_exp_fit_model=var_exp_fit_model,
        var_exp_fit_loo=var_exp_fit_loo, var_exp_test_loo=var_exp_test_loo,
        wrsm_native=wrsm_native, wrsm_shared=wrsm_shared, irsm_native=irsm_native, irsm_shared=irsm_shared,
        r_shared_irsm_wrsm=rsa.rsm_similarity(irsm_shared, wrsm_native),
        r_native_irsm_wrsm=rsa.rsm_similarity(irsm_native, wrsm_native),
        consistency_pairs=pairs, consistency=consistency,
    )
    if not infer:
        return out
    reference_wrsms = None
    if is_reference:
        reference_wrsms = wrsms
    elif reference_test is not None:
        reference_wrsms = np.stack([rsa.within_rsm(X) for X in zscore_networks(reference_test, np.float32)])
    out.update(layer_inference.infer_layer(
        fit, test, shared, srm, wrsms, labels=labels, reference_wrsms=reference_wrsms,
        network_values={m: out[m] for m in ("var_exp_fit", "var_exp_test", "var_exp_fit_loo", "var_exp_test_loo")},
        measures=measures, n_perm=n_perm, null_draws=null_draws, n_iter=n_iter, engine=engine,
        random_state=random_state, interval=interval, n_boot=n_boot, confidence=confidence))
    return out
