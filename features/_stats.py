"""Lean replicas of ``numpy.median`` / ``mean`` / ``std`` for the per-window hot path.

Each function performs the very floating-point operations the numpy routine performs (same partition
positions, same ``add.reduce`` of the middle elements, same divisions), so results are identical to the
last bit, signed zeros included; what goes is numpy's Python-level argument handling, which costs more
than the arithmetic on a window's worth of samples. Inputs must be float64 or integer arrays without NaN
(``numpy.median`` propagates NaN; these do not check for it).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["mean", "mean_rows", "median", "median_rows", "std"]

_add = np.add.reduce


def median(a: np.ndarray) -> float:
    """``float(numpy.median(a))`` of a non-empty 1-D float64 or integer array."""
    n = a.size
    k = n // 2
    part = a.copy()
    if n % 2:
        part.partition(k)
        return float(_add(part[k : k + 1], dtype=np.float64) / 1)
    part.partition((k - 1, k))
    return float(_add(part[k - 1 : k + 1], dtype=np.float64) / 2)


def median_rows(a: np.ndarray) -> np.ndarray:
    """``numpy.median(a, axis=1, keepdims=True)`` of a 2-D float64 array with at least one column."""
    n = a.shape[1]
    k = n // 2
    part = a.copy()
    if n % 2:
        part.partition(k, axis=1)
        return _add(part[:, k : k + 1], axis=1, keepdims=True) / 1
    part.partition((k - 1, k), axis=1)
    return _add(part[:, k - 1 : k + 1], axis=1, keepdims=True) / 2


def mean(a: np.ndarray) -> float:
    """``float(numpy.mean(a))`` of a non-empty 1-D float64 array."""
    return float(_add(a) / a.size)


def mean_rows(a: np.ndarray) -> np.ndarray:
    """``numpy.mean(a, axis=1, keepdims=True)`` of a 2-D float64 array with at least one column."""
    return _add(a, axis=1, keepdims=True) / a.shape[1]


def std(a: np.ndarray) -> float:
    """``float(numpy.std(a))`` (population SD) of a non-empty 1-D float64 array."""
    d = a - _add(a) / a.size
    return math.sqrt(float(_add(d * d) / a.size))
