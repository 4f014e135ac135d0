"""Where every output of the pipeline lives under one results root.

The layout is meant to be browsed by a person::

    ROOT/<data>/<model>/config.json                         resolved experiment config
    ROOT/<data>/<model>/test_labels.npy                     labels of the test images (int)
    ROOT/<data>/<model>/layers.json                         analysed layers in depth order, units
    ROOT/<data>/<model>/manifest.json                       activations registered with nnsrm register
    ROOT/<data>/<model>/subj<NN>/weights.<EEE>.weights.h5   stage 1, one per logged epoch
    ROOT/<data>/<model>/subj<NN>/history.csv                stage 1
    ROOT/<data>/<model>/subj<NN>/epoch_<EEE>/activations/<layer>.npy   stage 2 (images × units)
    ROOT/<data>/<model>/analyses/epoch_<EEE>/<layer>/...    stage 3
    ROOT/<data>/<model>/analyses/summary.csv                stage 3, tidy table
    ROOT/figures/                                           figures of every condition
"""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class ResultsLayout:
    """Paths of one experiment condition (data × model) under a results root."""

    root: Path
    data: str
    model: str

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def condition_dir(self) -> Path:
        return self.root / self.data / self.model

    @property
    def config_path(self) -> Path:
        return self.condition_dir / "config.json"

    @property
    def test_labels_path(self) -> Path:
        return self.condition_dir / "test_labels.npy"

    @property
    def layers_path(self) -> Path:
        """JSON ``{"layers": [names in depth order], "units": {name: n_units_saved}}`` (stage 2)."""
        return self.condition_dir / "layers.json"

    @property
    def manifest_path(self) -> Path:
        """JSON list of activation files made elsewhere and registered with ``nnsrm register`` (no stage 1-2)."""
        return self.condition_dir / "manifest.json"

    def subject_dir(self, subject: int) -> Path:
        return self.condition_dir / f"subj{subject:02d}"

    def weights_path(self, subject: int, epoch: int) -> Path:
        return self.subject_dir(subject) / f"weights.{epoch:03d}.weights.h5"

    def history_path(self, subject: int) -> Path:
        return self.subject_dir(subject) / "history.csv"

    def activations_dir(self, subject: int, epoch: int) -> Path:
        return self.subject_dir(subject) / f"epoch_{epoch:03d}" / "activations"

    def activation_path(self, subject: int, epoch: int, layer: str) -> Path:
        return self.activations_dir(subject, epoch) / f"{layer}.npy"

    def units_kept_path(self, subject: int, epoch: int, layer: str) -> Path:
        """Indices (into the flattened layer) of the units kept by the unit cap."""
        return self.activations_dir(subject, epoch) / f"{layer}.units.npy"

    @property
    def analyses_dir(self) -> Path:
        return self.condition_dir / "analyses"

    def analysis_dir(self, epoch: int, layer: str) -> Path:
        return self.analyses_dir / f"epoch_{epoch:03d}" / layer

    @property
    def summary_path(self) -> Path:
        return self.analyses_dir / "summary.csv"

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"
