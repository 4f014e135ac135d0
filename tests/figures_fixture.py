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

import numpy as np
from scipy.stats import ortho_group

import config
from nnsrm import atomic
from nnsrm.paths import ResultsLayout
from nnsrm.provenance import write_config_json

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
    layout = ResultsLayout(root, data, model)
    cfg = config.get_config(data, model, n_subjects=n_subjects, n_epochs=n_epochs)
    write_config_json(layout.config_path, cfg.to_dict())
    atomic.write_json(layout.layers_path, {"layers": list(layers), "units": dict(layers)})
    rng = np.random.default_rng(seed)
    labels = np.arange(N_IMAGES) % N_CLASSES
    atomic.save_npy(layout.test_labels_path, labels.astype(np.int64))
    pattern = {}
    for depth, (name, u) in enumerate(layers.items()):
        classes = rng.standard_normal((u, N_CLASSES))[:, labels]  # (u, n_images)
        pattern[name] = (1 + depth) * classes + rng.standard_normal((u, N_IMAGES))
    for s in range(n_subjects):
        rot = {name: ortho_group.rvs(u, random_state=int(rng.integers(2**31))) for name, u in layers.items()}
        for e in cfg.logged_epochs:
            files = []
            for name, u in layers.items():
                if e == 0:  # untrained: unrelated random features
                    X = rng.standard_normal((u, N_IMAGES))
                else:
                    X = rot[name] @ pattern[name] + (2.0 / e) * rng.standard_normal((u, N_IMAGES))
                path = layout.activation_path(s, e, name)
                atomic.save_npy(path, X.T.astype(np.float32))  # on disk: images × units
                files.append(path)
            atomic.write_marker(layout.activations_dir(s, e), files, subject=s, epoch=e)
    return layout


def make_analysed_root(root, conditions=CONDITIONS):
    """Synthetic stage-2 outputs for ``conditions``, analysed by run_analyses.py (in this process)."""
    import run_analyses

    for i, ((data, model), layers) in enumerate(conditions.items()):
        write_stage2(root, data, model, layers, seed=i)
        code = run_analyses.main(["--root", str(root), "--data", data, "--model", model, "--no-progress"])
        assert code == 0, f"run_analyses.py failed on the fixture ({data}×{model})"
    return root
