"""Real-data fixtures for the model tests; ``data_dir`` comes from tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.train_rr import FeatureTable, build_feature_table


@pytest.fixture(scope="session")
def val_table(data_dir: Path) -> FeatureTable:
    """RR features of every validation window (CinC and MIT-BIH), extracted afresh (about 10 s)."""
    return build_feature_table(data_dir, splits=("val",), progress=False)
