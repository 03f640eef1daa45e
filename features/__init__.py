"""Pure numpy/scipy ECG features: band-pass filtering, QRS detection, RR/HRV features, signal quality.

The hot-path entry points are :func:`extract`, one call per window, and :func:`extract_batch`, the same
for many windows at once; the building blocks are exported for tests, notebooks and other models.
"""

from features.errors import FeatureError
from features.filters import bandpass
from features.qrs import detect_qrs
from features.quality import QUALITY_REASONS, QualityReason, QualityReport, assess_quality
from features.rr import RR_FEATURE_NAMES, rr_features
from features.window import WindowFeatures, extract, extract_batch

__all__ = [
    "QUALITY_REASONS",
    "RR_FEATURE_NAMES",
    "FeatureError",
    "QualityReason",
    "QualityReport",
    "WindowFeatures",
    "assess_quality",
    "bandpass",
    "detect_qrs",
    "extract",
    "extract_batch",
    "rr_features",
]
