"""Which Python versions can install nnsrm from binary wheels only, on Linux x86_64 and macOS arm64?

    python tools/check_wheels.py                      # runtime and test (every extra), Python 3.10-3.15
    python tools/check_wheels.py --python 3.12 3.13 --extras runtime test

For every package that ``uv.lock`` would install (``uv export`` of the lock, per
extra), for every Python version and platform asked for, this asks the package
registry (PyPI's JSON API, https://pypi.org/pypi/<name>/json) whether the locked version has a wheel that the
platform can install (``packaging.tags``: the CPython tags of that version,
``abi3`` and ``py3-none-any``; manylinux up to glibc 2.35, macOS 11 to 14). A
package with only a source archive would be built on the user's machine: slow,
and a failure when it needs a compiler or system libraries (BrainIAK needs MPI
headers). Versions outside ``requires-python`` have no resolution in the lock;
for them the packages of the lowest supported version are checked, which shows
what blocks them.

Not part of the test suite (it downloads). Needs network access to pypi.org.
Exit status 0; the table is the output.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tomllib
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags, mac_platforms
from packaging.utils import parse_wheel_filename
from packaging.version import InvalidVersion, Version

REPO = Path(__file__).resolve().parents[1]
PLATFORMS = {
    "manylinux x86_64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"},
    "macOS arm64": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64"},
}
EXTRAS = ("runtime", "brainiak", "tensorflow", "cluster", "test")
DEFAULT_EXTRAS = ("runtime", "test")


def platform_tags(python: tuple[int, int], name: str) -> set[Tag]:
    """Wheel tags a CPython ``python`` on platform ``name`` accepts."""
    if name.startswith("manylinux"):
        plats = [f"manylinux_2_{minor}_x86_64" for minor in range(35, 4, -1)]
        plats += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]
    else:
        plats = list(mac_platforms((14, 0), "arm64"))
    tags = set(cpython_tags(python, platforms=plats))
    tags |= set(compatible_tags(python, interpreter=f"cp{python[0]}{python[1]}", platforms=plats))
    return tags


def environment(python: str, plat: str) -> dict:
    """Marker environment of CPython ``python`` (``"3.12"``) on platform ``plat``."""
    return {"python_version": python, "python_full_version": f"{python}.0", "implementation_name": "cpython",
            "platform_python_implementation": "CPython", "os_name": "posix", **PLATFORMS[plat]}


def exported_requirements(extra: str) -> list[Requirement]:
    """``uv export`` of the lock for one extra (``runtime`` = no extra): pinned requirements with markers."""
    uv = [sys.executable, "-m", "uv"] if _has_module("uv") else ["uv"]
    args = [*uv, "export", "--frozen", "--no-hashes", "--no-emit-project", "--no-header", "--no-annotate",
            "--format", "requirements-txt"]
    if extra != "runtime":
        args += ["--extra", extra]
    out = subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [Requirement(line) for line in out.splitlines() if line.strip() and not line.startswith(("#", "-"))]


def pin(requirement: Requirement) -> str:
    """The version an exported ``name==version`` requirement pins."""
    return str(next(iter(requirement.specifier)).version)


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def release_files(name: str, version: str) -> list[str]:
    """File names of one release on PyPI (its JSON API, all releases of the project)."""
    with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=120) as response:
        releases = json.load(response)["releases"]
    for key, files in releases.items():
        try:
            same = Version(key) == Version(version)
        except InvalidVersion:  # an ancient release with a non-PEP 440 version
            continue
        if same:
            return [f["filename"] for f in files if not f.get("yanked")]
    raise LookupError(f"{name} {version} is not on PyPI")


def has_wheel(files: list[str], tags: set[Tag]) -> bool:
    for f in files:
        if f.endswith(".whl"):
            _, _, _, wheel_tags = parse_wheel_filename(f)
            if wheel_tags & tags:
                return True
    return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", nargs="+", default=["3.10", "3.11", "3.12", "3.13", "3.14", "3.15"])
    parser.add_argument("--extras", nargs="+", default=list(DEFAULT_EXTRAS), choices=EXTRAS,
                        help="runtime (the demo), or the packages of an extra (test: every extra)")
    args = parser.parse_args(argv)

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    supported = SpecifierSet(project["requires-python"])
    lowest = min((p for p in args.python if f"{p}.0" in supported), key=lambda v: tuple(map(int, v.split("."))))
    reqs = {extra: exported_requirements(extra) for extra in args.extras}
    pins = {(r.name, pin(r)) for rs in reqs.values() for r in rs}
    with ThreadPoolExecutor(16) as pool:
        files = dict(zip(pins, pool.map(lambda p: release_files(*p), pins)))

    print(f"# Binary wheels of the locked packages ({datetime.date.today().isoformat()})")
    print(f"lock: uv.lock; requires-python {project['requires-python']}; checked on "
          f"{platform.system()} {platform.machine()} with Python {platform.python_version()}; "
          f"extras: {', '.join(args.extras)}\n")
    optional = ("brainiak", "mpi4py", "mpich", "tensorflow-cpu", "tensorflow")
    print("| Python | " + " | ".join(f"{extra}, {plat}" for extra in args.extras for plat in PLATFORMS)
          + " | left out by markers |")
    print("|---|" + "---|" * (len(args.extras) * len(PLATFORMS) + 1))
    for py in args.python:
        in_range = f"{py}.0" in supported
        version = tuple(map(int, py.split(".")))
        cells, left_out = [], set()
        for extra in args.extras:
            for plat in PLATFORMS:
                env = environment(py if in_range else lowest, plat)
                needed = [r for r in reqs[extra] if r.marker is None or Marker(str(r.marker)).evaluate(env)]
                names = {r.name for r in needed}
                left_out |= {r.name for r in reqs[extra] if r.name in optional and r.name not in names
                             and not (r.name == "tensorflow" and plat.startswith("many"))
                             and not (r.name == "tensorflow-cpu" and plat.startswith("mac"))}
                tags = platform_tags(version, plat)
                missing = [f"{r.name} {pin(r)}" for r in needed if not has_wheel(files[(r.name, pin(r))], tags)]
                cells.append(f"all {len(needed)} ✓" if not missing else "**no wheel**: " + ", ".join(sorted(missing)))
        label = py if in_range else f"{py} (not supported)"
        print(f"| {label} | " + " | ".join(cells) + f" | {', '.join(sorted(left_out)) or '—'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
