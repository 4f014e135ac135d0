"""The configuration a condition was actually trained with, read back from its ``config.json``.

Stage 1 saves the resolved configuration (registry values plus command-line
overrides such as ``--epochs 3``) as ``ROOT/<data>/<model>/config.json``.
Stages 2 and 3 start from it, so they look for exactly the epochs and
subjects that were trained.
"""

from __future__ import annotations

import dataclasses
import json

from nnsrm.cli import UsageError
from nnsrm.paths import ResultsLayout


def load_trained_config(layout: ResultsLayout, **overrides):
    """The saved ``ExperimentConfig`` of a condition, with ``overrides`` (None values ignored).

    Raises
    ------
    UsageError
        If stage 1 has not run for this condition under this root.
    """
    from nnsrm import config

    if not layout.config_path.exists():
        raise UsageError(f"no trained networks for {layout.data}×{layout.model} under {layout.root} "
                         f"({layout.config_path} missing); run train_cifar.py --data {layout.data} "
                         f"--model {layout.model} --root {layout.root} first")
    try:
        saved = json.loads(layout.config_path.read_text())["config"]
    except (ValueError, KeyError) as err:
        raise UsageError(f"{layout.config_path} is unreadable ({err}); rerun train_cifar.py") from None
    fields = {f.name for f in dataclasses.fields(config.ExperimentConfig)}
    saved = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in fields}
    saved.update({k: v for k, v in overrides.items() if v is not None})
    return config.ExperimentConfig(**saved)
