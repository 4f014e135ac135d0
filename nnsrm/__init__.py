"""nnsrm: train seeds of a network, record their hidden activity, align them with SRM and compare them.

The pipeline around the analysis library :mod:`qmvpa`:

- :mod:`nnsrm.config` — the experiments (the paper's conditions and the offline default);
- :mod:`nnsrm.data_loader`, :mod:`nnsrm.models`, :mod:`nnsrm.resnet` — data and networks;
- :mod:`nnsrm.training` (stage 1), :mod:`nnsrm.extract` (stage 2), :mod:`nnsrm.analysis` (stage 3);
- :mod:`nnsrm.figures` — the paper's figures from saved results;
- :mod:`nnsrm.simulation` — the XOR simulation;
- :mod:`nnsrm.jobs`, :mod:`nnsrm.runner`, :mod:`nnsrm.dask_engine`, :mod:`nnsrm.atomic` — jobs,
  where they run, and crash-safe writes;
- :mod:`nnsrm.commands` — the command lines (``nnsrm train|extract|register|analyse|figures|status|simulate``);
- bring your own activations (docs/bring-your-own.md): :func:`nnsrm.compare` analyses arrays in
  memory, :func:`nnsrm.register` registers a folder of them under a results root
  (:mod:`nnsrm.manifest`), :mod:`nnsrm.torch_extract` records a PyTorch model's.

Importing ``nnsrm`` is cheap: numpy, Keras, JAX and Dask load only where they are used
(``compare`` and ``register`` are imported on first use).
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("nnsrm")
except _metadata.PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0+unknown"

#: Public functions imported on first use (module attribute access), so ``import nnsrm`` stays cheap.
_LAZY = {"compare": ("nnsrm.comparison", "compare"), "register": ("nnsrm.manifest", "register_source")}

__all__ = ["compare", "register", "__version__"]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nnsrm' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
