"""Torch model zoo for the bedside ECG stream: training on PhysioNet data, artifacts and serving.

Importing the package loads torch but not the training stack (wfdb, scikit-learn); those are
imported by :mod:`models.data` and :mod:`models.train_rr`.
"""

from models.card import InputContract, ModelCard
from models.errors import ModelError
from models.rr_af import RRAFNet
from models.serving import RRAFScorer, load_module, load_rr_af

__all__ = ["InputContract", "ModelCard", "ModelError", "RRAFNet", "RRAFScorer", "load_module", "load_rr_af"]
