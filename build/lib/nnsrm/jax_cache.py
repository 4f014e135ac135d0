"""JAX's persistent compilation cache under the results root.

Every subject of a condition has the same architecture, so its training and
inference steps compile to the same XLA programs. With the cache, only the
first subject pays the compilation (about 20 s for the digits conv net on a
2-core CPU); the others start in about a second. Harmless on other backends.
"""

from __future__ import annotations

import os
from pathlib import Path


def enable_compilation_cache(root: str | os.PathLike) -> None:
    """Cache compiled XLA programs in ``ROOT/.cache/jax`` when the Keras backend is JAX.

    The environment variable ``NNSRM_JAX_CACHE`` names another folder (the tests
    share one cache between their many small results roots).
    """
    import keras

    if keras.backend.backend() != "jax":
        return
    import jax

    cache_dir = Path(os.environ.get("NNSRM_JAX_CACHE") or Path(root) / ".cache" / "jax")
    cache_dir.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(cache_dir))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
