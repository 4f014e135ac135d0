"""A small results root for the figure tests: synthetic stage-2 outputs, analysed by the real stage 3.

:func:`make_analysed_root` writes what stages 1–2 leave behind (config.json,
layers.json, test_labels.npy, per subject × epoch float32 activations,
images × units, with completion markers) for two conditions, digits × conv
and digits × mlp, then runs ``run_analyses.py`` on them in this process, so
the notebooks read real stage-3 files (results.npz, summary.csv) without any
network being trained. Epoch 0's networks are unrelated random features;
later epochs are random rotations of one class-structured pattern plus noise
that shrinks with training, deeper layers with more class structure.
"""

from __future__ import annotations

from stage_outputs import write_synthetic_stage2

from nnsrm.paths import ResultsLayout

#: Conditions of the fixture: (data, model) -> {layer: units}, shallow to deep.
CONDITIONS = {
    ("digits", "conv"): {"pool1": 24, "dense1": 16, "logits": 10},
    ("digits", "mlp"): {"dense1": 16},  # one layer: the single-colour edge case
}
N_SUBJECTS = 5  # the trajectories draw 5 networks
N_EPOCHS = 2  # digits' logged epochs up to 2: 0, 1, 2
N_IMAGES, N_CLASSES = 150, 5


def write_stage2(root, data: str, model: str, layers: dict, n_subjects: int = N_SUBJECTS,
                 n_epochs: int = N_EPOCHS, seed: int = 0) -> ResultsLayout:
    """Write synthetic stage-1/2 outputs of one condition under ``root``; return its layout."""
    return write_synthetic_stage2(root, data, model, layers, n_subjects, n_epochs, N_IMAGES, N_CLASSES,
                                  seed=seed, depth_gain=1.0, pattern_noise=1.0, epoch_noise=2.0)


def make_analysed_root(root, conditions=CONDITIONS):
    """Synthetic stage-2 outputs for ``conditions``, analysed by run_analyses.py (in this process)."""
    from nnsrm.commands import analyse as run_analyses

    for i, ((data, model), layers) in enumerate(conditions.items()):
        write_stage2(root, data, model, layers, seed=i)
        code = run_analyses.main(["--root", str(root), "--data", data, "--model", model, "--no-progress",
                                  "--processes", "1", "--n-perm", "100", "--null-refits", "4"])
        assert code == 0, f"run_analyses.py failed on the fixture ({data}×{model})"
    return root
