"""Layer identification (qmvpa.layer_identification): accuracy rule, per-measure builders, synthetic chains."""

import numpy as np
import pytest

from qmvpa import cka, factor, procrustes, rsa
from qmvpa import layer_identification as li

TOL = 1e-10
N_FIT, N_TEST = 60, 40
UNITS = (20, 25, 30, 20)  # per layer; the layers differ in width


def _chain(rng, n_layers=len(UNITS), dim=10, n_images=N_FIT + N_TEST, fresh=0.5):
    """Signals of successive layers: a random nonlinear map of the previous one plus new variance."""
    signals = [rng.standard_normal((dim, n_images))]
    for _ in range(n_layers - 1):
        nxt = np.tanh(2.0 * rng.standard_normal((dim, dim)) / np.sqrt(dim) @ signals[-1])
        nxt = (nxt - nxt.mean(axis=1, keepdims=True)) / nxt.std()
        signals.append(np.sqrt(1 - fresh) * nxt + np.sqrt(fresh) * rng.standard_normal(nxt.shape))
    return signals


def _network(rng, signals, noise=0.3):
    """One 'network': each layer a distinct random linear read-out of its signal, plus noise."""
    return [rng.standard_normal((u, s.shape[0])) / np.sqrt(s.shape[0]) @ s
            + noise * rng.standard_normal((u, s.shape[1])) for s, u in zip(signals, UNITS)]


def _networks(seed, n_networks=3):
    rng = np.random.default_rng(seed)
    signals = _chain(rng)
    nets = [_network(rng, signals) for _ in range(n_networks)]
    return [[X[:, :N_FIT] for X in n] for n in nets], [[X[:, N_FIT:] for X in n] for n in nets]


# --------------------------------------------------------------------------- accuracy rule


def test_accuracy_rule():
    S = np.array([[0.9, 0.1, 0.2],
                  [0.3, 0.8, 0.8],   # tie between the right layer and another: half credit
                  [0.7, 0.1, 0.5]])  # wrong
    assert li.identification_accuracy(S) == pytest.approx((1 + 0.5 + 0) / 3)
    assert li.identification_accuracy(-S, higher_is_similar=False) == pytest.approx(1.5 / 3)
    # columns: layer 0 of B best matches layer 0 of A (0.9); 1 -> 1 (0.8); 2 -> 1 (0.8): wrong
    assert li.identification_accuracy(S, both_directions=True) == pytest.approx((1.5 + 2) / 6)
    stacked = np.stack([np.eye(3), S])
    assert li.identification_accuracy(stacked) == pytest.approx((3 + 1.5) / 6)
    S_nan = np.eye(3)
    S_nan[0, 1] = np.nan
    assert li.identification_accuracy(S_nan) == 1.0


def test_accuracy_bad_input():
    with pytest.raises(ValueError, match="similarity must have shape"):
        li.identification_accuracy(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="similarity must have shape"):
        li.identification_accuracy(np.zeros(3))


# --------------------------------------------------------------------------- builders


def test_srm_rsa_similarity_is_the_pipeline_statistic_for_two_networks():
    fits, tests = _networks(0, n_networks=2)
    a_fit, b_fit, a_test, b_test = fits[0][1], fits[1][2], tests[0][1], tests[1][2]
    model = factor.fit_srm([a_fit, b_fit], n_components=25, n_iter=4, random_state=3)
    shared = factor.transform(model, [a_test, b_test])
    expected = rsa.rsm_similarity(rsa.inter_subject_rsm(shared),
                                  rsa.mean_within_rsm([a_test, b_test]))
    got = li.srm_rsa_similarity(a_fit, a_test, b_fit, b_test, n_iter=4, random_state=3)
    assert abs(got - expected) < 1e-6  # float32 SRM engine; the mean wRSM in float64


def test_matrix_entries_match_the_pair_functions():
    fits, tests = _networks(1, n_networks=2)
    (fa, fb), (ta, tb) = fits, tests
    S = li.layer_similarity_matrix(ta, tb, "cka")
    S_deb = li.layer_similarity_matrix(ta, tb, "cka_debiased")
    S_rsa = li.layer_similarity_matrix(ta, tb, "native_rsa", method="spearman")
    D_cv = li.layer_similarity_matrix(ta, tb, "procrustes", fa, fb)
    D_same = li.layer_similarity_matrix(ta, tb, "procrustes")
    S_srm = li.layer_similarity_matrix(ta, tb, "srm_rsa", fa, fb, n_iter=3)
    assert S.shape == S_srm.shape == (4, 4)
    for l in range(4):
        for m in range(4):
            assert abs(S[l, m] - cka.linear_cka(ta[l], tb[m])) < TOL
            assert abs(S_deb[l, m] - cka.linear_cka(ta[l], tb[m], debiased=True)) < TOL
            assert abs(S_rsa[l, m] - rsa.rsm_similarity(rsa.within_rsm(ta[l]), rsa.within_rsm(tb[m]),
                                                        "spearman")) < TOL
            assert abs(D_cv[l, m] - procrustes.procrustes_distance(fa[l], fb[m], ta[l], tb[m])) < TOL
            assert abs(D_same[l, m] - procrustes.procrustes_distance(ta[l], tb[m])) < TOL
    assert abs(S_srm[1, 2] - li.srm_rsa_similarity(fa[1], ta[1], fb[2], tb[2], n_iter=3)) < TOL


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("measure", list(li.MEASURES))
def test_every_measure_identifies_the_layers_of_synthetic_networks(seed, measure):
    fits, tests = _networks(seed)
    pairs, S = li.pairwise_layer_similarity(tests, measure, fits, n_iter=3)
    assert pairs.tolist() == [[0, 1], [0, 2], [1, 2]] and S.shape == (3, 4, 4)
    higher = li.MEASURES[measure]
    assert li.identification_accuracy(S, higher, both_directions=True) == 1.0
    # network 1's layers in reverse order (no layer in its place): identification fails
    order = [3, 2, 1, 0]
    shuffled_tests = [tests[0], [tests[1][i] for i in order]]
    shuffled_fits = [fits[0], [fits[1][i] for i in order]]
    _, S_shuffled = li.pairwise_layer_similarity(shuffled_tests, measure, shuffled_fits, n_iter=3)
    assert li.identification_accuracy(S_shuffled, higher) <= 0.25


def test_builder_bad_input():
    fits, tests = _networks(2, n_networks=2)
    with pytest.raises(ValueError, match="measure must be one of"):
        li.layer_similarity_matrix(tests[0], tests[1], "cca")
    with pytest.raises(ValueError, match="method must be one of"):
        li.layer_similarity_matrix(tests[0], tests[1], "native_rsa", method="kendall")
    with pytest.raises(ValueError, match="'srm_rsa' needs the fit images"):
        li.layer_similarity_matrix(tests[0], tests[1], "srm_rsa")
    with pytest.raises(ValueError, match="give both fit_a and fit_b"):
        li.layer_similarity_matrix(tests[0], tests[1], "procrustes", fits[0])
    with pytest.raises(ValueError, match=r"test_b\[0\] has 30 images, expected 40"):
        li.layer_similarity_matrix(tests[0], [X[:, :30] for X in tests[1]], "cka")
    with pytest.raises(ValueError, match="fit_b and test_b must have the same layers"):
        li.layer_similarity_matrix(tests[0], tests[1], "procrustes", fits[0], fits[1][:3])
    with pytest.raises(ValueError, match="non-empty list of per-layer"):
        li.layer_similarity_matrix([], tests[1], "cka")
    with pytest.raises(ValueError, match=r"test_a\[0\] must be 2-D"):
        li.layer_similarity_matrix([tests[0][0][0]], tests[1], "cka")
    with pytest.raises(ValueError, match="same number of layers"):
        li.pairwise_layer_similarity([tests[0], tests[1][:3]], "cka")
    with pytest.raises(ValueError, match="at least 2 networks"):
        li.pairwise_layer_similarity([tests[0]], "cka")
    with pytest.raises(ValueError, match="fits has 1 networks but tests has 2"):
        li.pairwise_layer_similarity(tests, "procrustes", fits[:1])
