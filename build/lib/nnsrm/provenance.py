"""What produced a result: configuration, seed, package versions, git commit, machine."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

from nnsrm import atomic

PACKAGES = ("numpy", "scipy", "scikit-learn", "keras", "jax", "jaxlib", "tensorflow-cpu", "torch",
            "brainiak", "pandas", "dask", "distributed")


def package_versions(packages=PACKAGES) -> dict:
    """Installed version of each package (absent ones omitted)."""
    out = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    """The commit of this checkout (with ``+dirty`` if it has uncommitted changes), or None."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def provenance() -> dict:
    """Versions, commit, machine and time, for a ``config.json``."""
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": os.cpu_count(),
        "keras_backend": os.environ.get("KERAS_BACKEND"),
        "packages": package_versions(),
    }


def write_config_json(path: str | os.PathLike, config: dict, **extra) -> None:
    """Write ``{"config": ..., **extra, "provenance": ...}`` atomically to ``path``."""
    atomic.write_json(path, {"config": config, **extra, "provenance": provenance()})
