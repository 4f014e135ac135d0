"""Atomic writes, completion markers, job locks."""

import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

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


def test_every_write_is_fsynced_before_and_after_its_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    atomic.write_text(tmp_path / "t.txt", "x")
    assert len(synced) == 2
    if os.path.exists("/proc/self/fd"):
        assert ".tmp" in Path(synced[0]).name and Path(synced[0]).parent == tmp_path  # the file, before its rename
        assert Path(synced[1]) == tmp_path  # then its folder


def _hold_lock_in_a_subprocess(directory):
    """A process that holds the job lock of ``directory`` and a temporary file in it until killed."""
    code = ("import sys, time; from nnsrm import atomic\n"
            "with atomic.job_lock(sys.argv[1]):\n"
            "    open(sys.argv[1] + '/.x.live.tmp.npy', 'wb').close(); print('held', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(directory)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_writers_lock_is_waited_for_and_its_temporaries_kept(tmp_path):
    """A second writer waits for the lock holder; the holder's temporary file is not removed meanwhile;
    a writer that died releases its lock, and its temporary file is then removed."""
    from nnsrm import state

    holder = _hold_lock_in_a_subprocess(tmp_path)
    ran, done = [], threading.Event()

    def work():
        ran.append(sorted(p.name for p in tmp_path.iterdir()))
        atomic.remove_stale_temporaries(tmp_path)  # as every job does once it holds the lock
        atomic.write_marker(tmp_path, [], **state.marker_fields({"seed": 0}))
        return "ran"

    second = threading.Thread(target=lambda: (state.run_job(tmp_path, {"seed": 0}, "job", False, work,
                                                            skipped="skipped"), done.set()))
    second.start()
    second.join(timeout=1.0)  # it cannot get the lock while the holder lives
    assert second.is_alive() and not ran
    assert (tmp_path / ".x.live.tmp.npy").exists()  # the live writer's temporary file is still there
    holder.send_signal(signal.SIGKILL)  # the holder dies: the system releases its lock
    holder.wait()
    second.join(timeout=60)
    assert done.is_set() and ran == [[".lock", ".x.live.tmp.npy"]]  # it ran after the death ...
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", atomic.MARKER_NAME]  # ... and cleaned up
    assert state.run_job(tmp_path, {"seed": 0}, "job", False, work, skipped="skipped") == "skipped"
