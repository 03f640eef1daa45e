"""The model zoo: architecture families, served (calibrated) models, latency profiles and per-model records.

Public surface (the registry, the ensemble and the CLI code against it):

- :data:`FAMILIES`: family name -> module class, built as ``cls(**card.architecture)``.
- :class:`ModelBatch`, :class:`ServedModel`, :func:`load_served`, :func:`load_zoo`, :func:`make_batch`.
- :func:`profile_latency`: median ms per ``predict`` call by batch size.
- :func:`validation_batch`: fixed validation windows and labels for backtests.
- :data:`ZOO_SPECS` / :class:`ZooSpec`: the declared zoo that :mod:`models.train_zoo` trains.
- :func:`read_predictions` / :func:`metrics_by_split`: the per-window predictions kept next to each card.

Importing the package loads torch but not the training stack (wfdb, scikit-learn).
"""

from __future__ import annotations

from torch import nn

from models.rr_af import RRAFNet
from models.zoo.nets import ConvGRU, ConvTransformer, ResNet1D, WaveformNet
from models.zoo.served import (
    DEFAULT_BATCH_SIZES,
    ModelBatch,
    ServedModel,
    load_served,
    load_zoo,
    make_batch,
    profile_latency,
    warm_up,
)
from models.zoo.specs import ZOO_SPECS, ZooSpec, spec_by_name

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "FAMILIES",
    "ZOO_SPECS",
    "ConvGRU",
    "ConvTransformer",
    "ModelBatch",
    "Predictions",
    "ResNet1D",
    "ServedModel",
    "WaveformNet",
    "ZooSpec",
    "load_served",
    "load_zoo",
    "make_batch",
    "metrics_by_split",
    "profile_latency",
    "warm_up",
    "read_predictions",
    "spec_by_name",
    "validation_batch",
]

FAMILIES: dict[str, type[nn.Module]] = {
    "rr-mlp": RRAFNet,
    "resnet1d": ResNet1D,
    "conv-gru": ConvGRU,
    "conv-transformer": ConvTransformer,
}
"""Architecture family (``ModelCard.family``) -> module class taking ``**card.architecture``."""

from models.zoo.records import Predictions, metrics_by_split, read_predictions, validation_batch  # noqa: E402
