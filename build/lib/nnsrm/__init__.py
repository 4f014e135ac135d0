"""nnsrm: train seeds of a network, record their hidden activity, align them with SRM and compare them.

The pipeline around the analysis library :mod:`qmvpa`:

- :mod:`nnsrm.config` — the experiments (the paper's conditions and the offline default);
- :mod:`nnsrm.data_loader`, :mod:`nnsrm.models`, :mod:`nnsrm.resnet` — data and networks;
- :mod:`nnsrm.training` (stage 1), :mod:`nnsrm.extract` (stage 2), :mod:`nnsrm.analysis` (stage 3);
- :mod:`nnsrm.figures` — the paper's figures from saved results;
- :mod:`nnsrm.simulation` — the XOR simulation;
- :mod:`nnsrm.jobs`, :mod:`nnsrm.runner`, :mod:`nnsrm.dask_engine`, :mod:`nnsrm.atomic` — jobs,
  where they run, and crash-safe writes;
- :mod:`nnsrm.commands` — the command lines (``nnsrm train|extract|analyse|figures|status|simulate``).

Importing ``nnsrm`` is cheap: Keras, JAX and Dask load only where they are used.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("nnsrm")
except _metadata.PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0+unknown"
