"""Stage 2's compiled extractor: the same activations as Keras' predict, one compiled program per condition."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import stage_outputs as so

from nnsrm import config, extract
from nnsrm.run_config import load_trained_config
from nnsrm.training import cached_dataset
from qmvpa.preproc import subsample_units

# Same network and weights, two XLA programs (jit with weights as arguments vs. Keras' predict function).
F32_RTOL, F32_ATOL = 1e-5, 1e-5


def test_compiled_extractor_matches_predict_and_does_not_recompile(digits_demo):
    lay = so.layout(digits_demo)
    cfg = load_trained_config(lay)
    data = cached_dataset("digits", None)
    ex = extract.get_extractor(cfg, data.input_shape, data.n_classes)
    assert ex.names == json.loads(lay.layers_path.read_text())["layers"]
    keep = [subsample_units(n, cfg.max_units, extract.unit_seed(cfg, 0, name)) for n, name in zip(ex.sizes, ex.names)]
    files = [lay.weights_path(0, e) for e in (0, 3)]
    ours = ex.run(files, [keep, keep], data.x_test)
    for path, acts in zip(files, ours):
        ex.model.load_weights(path)
        reference = extract.layer_activations(ex.sub_model, data.x_test, keep, cfg.extract_batch_size)
        for name, a, r in zip(ex.names, acts, reference):
            assert a.dtype == np.float32 and a.shape == r.shape == (len(data.x_test), len(keep[ex.names.index(name)]))
            np.testing.assert_allclose(a, r, rtol=F32_RTOL, atol=F32_ATOL, err_msg=f"{path.name} {name}")
    # What stage 2 wrote for subject 0 at epoch 3 is what the extractor gives.
    np.testing.assert_array_equal(np.load(lay.activation_path(0, 3, "logits")), ours[1][ex.names.index("logits")])
    traces = ex.traces
    assert traces >= 1
    # Another subject, other epochs: new weights, same program.
    ex.run([lay.weights_path(1, e) for e in (1, 2, 3)], [keep] * 3, data.x_test)
    assert ex.traces == traces
    assert extract.get_extractor(cfg, data.input_shape, data.n_classes) is ex  # built once per process


def test_stacked_extraction_matches_one_file_at_a_time(digits_demo):
    """The accelerator path (weights stacked under vmap, a fixed stack width) on the CPU."""
    lay = so.layout(digits_demo)
    cfg = load_trained_config(lay)
    data = cached_dataset("digits", None)
    ex = extract.Extractor(cfg, data.input_shape, data.n_classes, strategy="vmap")
    ex.stack_width = 3
    keep = [subsample_units(n, cfg.max_units, extract.unit_seed(cfg, 2, name)) for n, name in zip(ex.sizes, ex.names)]
    files = [lay.weights_path(2, e) for e in (0, 1, 2, 3)]  # one full stack of 3, one padded
    stacked = ex.run(files, [keep] * 4, data.x_test)
    for e, acts in zip((0, 1, 2, 3), stacked):
        for name, a in zip(ex.names, acts):
            np.testing.assert_allclose(a, np.load(lay.activation_path(2, e, name)), rtol=F32_RTOL, atol=F32_ATOL)


def test_stage2_job_per_subject_skips_complete_epochs(digits_demo, tmp_path):
    root = so.copy_stage1(digits_demo, tmp_path / "root")
    cfg = config.get_config("digits", "conv", n_subjects=3, n_epochs=3)
    assert extract.write_condition_metadata(cfg, root) == ["pool1", "pool2", "dense1", "logits"]
    first = extract.extract_subject(cfg, root, 1, epochs=[0, 3])
    assert [(r["epoch"], r["skipped"]) for r in first] == [(0, False), (3, False)]
    again = extract.extract_subject(cfg, root, 1)
    assert [(r["epoch"], r["skipped"]) for r in again] == [(0, True), (1, False), (2, False), (3, True)]
    so.assert_same_stage2(digits_demo, root, subjects=(1,), epochs=(0, 1, 2, 3))


def test_stage2_job_refuses_a_folder_made_otherwise_and_writes_the_sequential_record(digits_demo, tmp_path):
    from nnsrm import atomic, state
    from nnsrm.errors import StaleOutputError

    root = tmp_path / "root"
    shutil.copytree(digits_demo, root, ignore=shutil.ignore_patterns("analyses", ".cache", ".lock"))
    cfg = config.get_config("digits", "conv", n_subjects=3, n_epochs=3)
    lay = so.layout(root)
    adir = lay.activations_dir(0, 2)
    info = atomic.read_marker(adir)
    assert info[state.RECORD_KEY] == state.stage2_record(cfg, lay, 0)
    info[state.RECORD_KEY]["max_units"] = 10
    atomic.write_marker(adir, [adir / f for f in info.pop("files")], **info)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    with pytest.raises(StaleOutputError, match=rf"activations subj00 epoch 002 \(.*\) was made with --max-units 10, "
                                               rf"this run asks for --max-units {cfg.max_units}; pass --overwrite"):
        extract.extract_subject(cfg, root, 0)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
