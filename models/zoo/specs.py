"""The zoo, declared: one :class:`ZooSpec` per model that ``holmes train`` builds.

Families: ``rr-mlp`` (RR/HRV feature vector -> MLP or logistic regression), ``resnet1d`` (1-D ResNet of
several widths and depths), ``conv-gru`` (recurrent) and ``conv-transformer`` (attention). Each comes in
10-s and 30-s windows, and the waveform families in one-lead and two-lead variants. Training budgets
are in optimiser steps, never in seconds, so a seed fixes the weights (see :mod:`models.train_zoo`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from features import RR_FEATURE_NAMES
from models.card import InputKind

__all__ = ["ZOO_SPECS", "ZooSpec", "spec_by_name"]


@dataclass(frozen=True, slots=True)
class ZooSpec:
    """How to build and train one zoo model.

    Attributes
    ----------
    name : str
        Model name (card name and artifact stem, ``-`` becomes ``_`` in file names).
    family : str
        Key of :data:`models.zoo.FAMILIES`.
    window_s : int
        Window length in seconds (10 or 30).
    leads : int
        Leads read (1 or 2).
    kind : {"waveform", "rr"}
        Input kind of the contract.
    architecture : dict
        Constructor arguments; ``leads`` is added for waveform families, ``n_features`` for ``rr-mlp``.
    max_epochs : int
        Upper bound on epochs; training stops earlier after ``patience`` epochs without a better
        validation ROC-AUC.
    patience : int
        Early-stopping patience in epochs.
    steps_per_epoch : int
        Optimiser steps per epoch (waveform models; ``rr-mlp`` epochs are full passes).
    batch_size : int
        Windows per step.
    learning_rate, weight_decay : float
        AdamW settings (cosine decay over ``max_epochs``).
    version : int
        Card version.
    trainer : str
        ``"zoo"`` (the shared loop) or ``"rr-af-v1"`` (the original :mod:`models.train_rr` recipe, which
        reproduces the committed ``rr_af_v1.pt`` bit for bit).
    """

    name: str
    family: str
    window_s: int
    leads: int
    kind: InputKind
    architecture: dict[str, Any] = field(default_factory=dict)
    max_epochs: int = 12
    patience: int = 4
    steps_per_epoch: int = 40
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    version: int = 1
    trainer: str = "zoo"

    @property
    def stem(self) -> str:
        """Artifact file stem, e.g. ``resnet1d_w16d4_1l_10s_v1``."""
        return f"{self.name.replace('-', '_')}_v{self.version}"


def _rr(name: str, window_s: int, hidden: tuple[int, ...], **kw: Any) -> ZooSpec:
    return ZooSpec(
        name=name,
        family="rr-mlp",
        window_s=window_s,
        leads=1,
        kind="rr",
        architecture={"hidden": list(hidden), "dropout": 0.1 if hidden else 0.0},
        max_epochs=300,
        patience=30,
        batch_size=256,
        learning_rate=3e-3,
        weight_decay=1e-3,
        **kw,
    )


def _suffix(n_rr: int, leads: int, window_s: int) -> str:
    return f"{'-rr' if n_rr else ''}-{leads}l-{window_s}s"


def _resnet(
    width: int, depth: int, leads: int, window_s: int, n_rr: int = 0, downsample: int = 2, **kw: Any
) -> ZooSpec:
    full = "-full" if downsample == 1 else ""
    return ZooSpec(
        name=f"resnet1d-w{width}d{depth}{full}{_suffix(n_rr, leads, window_s)}",
        family="resnet1d",
        window_s=window_s,
        leads=leads,
        kind="waveform",
        architecture={
            "width": width,
            "depth": depth,
            "kernel_size": 7,
            "downsample": downsample,
            "dropout": 0.1,
            "n_rr": n_rr,
        },
        **kw,
    )


def _gru(
    width: int, hidden: int, leads: int, window_s: int, n_rr: int = 0, stem_strides: int = 4, **kw: Any
) -> ZooSpec:
    dense = "" if stem_strides == 4 else f"s{stem_strides}"
    return ZooSpec(
        name=f"gru-w{width}h{hidden}{dense}{_suffix(n_rr, leads, window_s)}",
        family="conv-gru",
        window_s=window_s,
        leads=leads,
        kind="waveform",
        architecture={
            "width": width,
            "hidden": hidden,
            "stem_strides": stem_strides,
            "downsample": 2,
            "dropout": 0.1,
            "n_rr": n_rr,
        },
        **kw,
    )


def _transformer(
    d_model: int, layers: int, leads: int, window_s: int, n_rr: int = 0, stem_strides: int = 5, **kw: Any
) -> ZooSpec:
    fine = "" if stem_strides == 5 else f"s{stem_strides}"
    return ZooSpec(
        name=f"transformer-d{d_model}l{layers}{fine}{_suffix(n_rr, leads, window_s)}",
        family="conv-transformer",
        window_s=window_s,
        leads=leads,
        kind="waveform",
        architecture={
            "d_model": d_model,
            "heads": 4,
            "layers": layers,
            "stem_strides": stem_strides,
            "downsample": 2,
            "dropout": 0.1,
            "n_rr": n_rr,
        },
        **kw,
    )


N_RR = len(RR_FEATURE_NAMES)
LONG = {"max_epochs": 16, "steps_per_epoch": 50, "patience": 5}
"""Budget of the hybrid (waveform + RR) models, the candidates for the served model."""
DEEP = {"max_epochs": 40, "steps_per_epoch": 50, "patience": 8}
"""Budget of the one-lead accuracy points (about 8 passes over the CinC training windows)."""

ZOO_SPECS: tuple[ZooSpec, ...] = (
    # RR/HRV feature models: microseconds per window once the worker has the RR vector.
    ZooSpec(
        name="rr-af",
        family="rr-mlp",
        window_s=10,
        leads=1,
        kind="rr",
        architecture={"hidden": [32, 16], "dropout": 0.1},
        max_epochs=300,  # the settings of models.train_rr, which this trainer calls
        patience=30,
        batch_size=256,
        learning_rate=3e-3,
        weight_decay=1e-3,
        trainer="rr-af-v1",
    ),
    _rr("rr-logreg-10s", 10, ()),
    _rr("rr-logreg-30s", 30, ()),
    _rr("rr-mlp-h32-30s", 30, (32, 16)),
    _rr("rr-mlp-h64-10s", 10, (64, 64)),
    _rr("rr-mlp-h64-30s", 30, (64, 64)),
    # ResNet1D: widths 8/16/24, depths 3/4/6, 10-s and 30-s windows, one and two leads; "-rr" hybrids also
    # read the RR vector.
    _resnet(8, 3, 1, 10),
    _resnet(16, 4, 1, 10),
    _resnet(24, 6, 1, 10),
    _resnet(16, 4, 1, 10, N_RR, **LONG),
    _resnet(8, 3, 1, 30),
    _resnet(16, 4, 1, 30, N_RR, **LONG),
    _resnet(8, 3, 2, 10),
    _resnet(16, 4, 2, 10),
    _resnet(16, 4, 2, 10, N_RR, **LONG),
    _resnet(8, 3, 2, 30),
    _resnet(16, 4, 2, 30),
    _resnet(16, 4, 2, 30, N_RR, **LONG),
    # Accuracy points for one-lead (CinC-like) wards: wider, deeper hybrids on a budget 2.5x LONG, because the
    # LONG hybrids were still improving when their budget ran out (best epoch = last epoch). One per family:
    # these two ResNets, and the GRU and transformer below.
    _resnet(24, 6, 1, 10, N_RR, **DEEP),
    _resnet(24, 6, 1, 30, N_RR, **DEEP),
    # The costly end of the zoo (about 15 ms per window at batch 1): full 250 Hz, 32-128 channels, 8 blocks;
    # a short budget keeps the zoo's training time in bounds, the RR branch makes it usable anyway.
    _resnet(32, 8, 2, 30, N_RR, downsample=1, max_epochs=4, steps_per_epoch=25, batch_size=32, learning_rate=1e-3),
    # Recurrent: convolutional stem + bidirectional GRU (7.8 Hz steps; the s3 variant 15.6 Hz, costlier and
    # trained briefly, with the RR branch).
    _gru(16, 32, 1, 10),
    _gru(16, 32, 2, 10),
    _gru(16, 32, 1, 10, N_RR, **LONG),
    _gru(16, 32, 1, 30, N_RR, stem_strides=3, max_epochs=6, steps_per_epoch=30, batch_size=32),
    _gru(24, 48, 1, 10, N_RR, **DEEP),
    # Attention: convolutional tokeniser (one token per 256 ms) + transformer encoder.
    _transformer(32, 2, 1, 10),
    _transformer(32, 2, 2, 10),
    _transformer(32, 2, 1, 30),
    _transformer(48, 3, 1, 10, N_RR, **DEEP),
    # The costliest point of the zoo (about 45 ms per window, batch 1 or 16, on this CPU; 26k parameters): one
    # token per 32 ms, so 938 tokens per lead attend to each other; trained briefly, with the RR branch.
    _transformer(32, 2, 2, 30, N_RR, stem_strides=2, max_epochs=4, steps_per_epoch=20, batch_size=16),
)


def spec_by_name(name: str) -> ZooSpec:
    """The spec called ``name``; KeyError when there is none."""
    for spec in ZOO_SPECS:
        if spec.name == name:
            return spec
    raise KeyError(name)
