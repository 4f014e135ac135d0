"""Atomic writes and completion markers."""

import os
import stat

import numpy as np
import pytest

from nnsrm import atomic


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.npy"
    atomic.save_npy(target, np.arange(3))
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    np.testing.assert_array_equal(np.load(target), np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]


def test_written_files_follow_the_umask_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "t.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "t.txt").stat().st_mode) == 0o644


def test_marker_detects_missing_truncated_and_changed_files(tmp_path):
    a, b = tmp_path / "a.npy", tmp_path / "sub" / "b.npy"
    atomic.save_npy(a, np.zeros(10))
    atomic.save_npy(b, np.ones(10))
    assert atomic.marker_status(tmp_path) == "missing"
    atomic.write_marker(tmp_path, [a, b], note="x")
    assert atomic.is_complete(tmp_path, verify=True)
    data = bytearray(a.read_bytes())
    data[-1] ^= 0xFF  # same size, different content: only the checksum sees it
    a.write_bytes(bytes(data))
    assert atomic.marker_status(tmp_path) == "complete"
    assert atomic.marker_status(tmp_path, verify=True) == "corrupt"
    b.write_bytes(b.read_bytes()[:20])  # truncated
    assert atomic.marker_status(tmp_path) == "corrupt"
    b.unlink()
    assert atomic.marker_status(tmp_path) == "corrupt"
    (tmp_path / atomic.MARKER_NAME).write_text("{not json")
    assert atomic.marker_status(tmp_path) == "corrupt"
    atomic.clear_marker(tmp_path)
    assert atomic.marker_status(tmp_path) == "missing"


def test_stale_temporaries_are_removed_but_not_outputs(tmp_path):
    atomic.save_npy(tmp_path / "keep.npy", np.zeros(2))
    (tmp_path / ".keep.abc123.tmp.npy").write_bytes(b"half-written by a killed run")
    assert atomic.remove_stale_temporaries(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep.npy"]
    assert atomic.remove_stale_temporaries(tmp_path / "absent") == 0
