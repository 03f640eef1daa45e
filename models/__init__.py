"""Torch model zoo for the bedside ECG stream: training on PhysioNet data, artifacts and serving.

The zoo (families, served models, latency profiles, per-model records) is :mod:`models.zoo`; training is
:mod:`models.train_zoo`, folder evaluation :mod:`models.evaluate`. Importing the package loads torch but
not the training stack (wfdb, scikit-learn); those are imported by :mod:`models.data`,
:mod:`models.train_rr`, :mod:`models.train_zoo` and :mod:`models.evaluate`.
"""

from models.card import InputContract, ModelCard
from models.errors import ModelError
from models.rr_af import RRAFNet
from models.serving import RRAFScorer, load_module, load_rr_af
from models.zoo import FAMILIES, ModelBatch, ServedModel, load_served, load_zoo, make_batch

__all__ = [
    "FAMILIES",
    "InputContract",
    "ModelBatch",
    "ModelCard",
    "ModelError",
    "RRAFNet",
    "RRAFScorer",
    "ServedModel",
    "load_module",
    "load_rr_af",
    "load_served",
    "load_zoo",
    "make_batch",
]
