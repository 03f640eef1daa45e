"""Benchmark of :func:`features.extract` on a synthetic 10-s, 2-lead, 250 Hz window.

Run ``python -m features.bench``; prints per-call wall times, asserts nothing.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Sequence

import numpy as np

from features.window import extract

__all__ = ["main", "synthetic_ecg"]


def synthetic_ecg(
    seconds: float = 10.0, fs_hz: float = 250.0, n_leads: int = 2, irregular: bool = False, seed: int = 0
) -> np.ndarray:
    """ECG-like float32 signal in mV, shape ``(n_leads, n)``: Gaussian P, QRS and T waves plus noise.

    ``irregular`` draws RR intervals uniformly in 0.4-1.1 s (AF-like) instead of 0.8 s +/- 3 %.
    """
    rng = np.random.default_rng(seed)
    n = round(seconds * fs_hz)
    t = np.arange(n) / fs_hz
    beats: list[float] = []
    now = 0.3
    while now < seconds:
        beats.append(now)
        now += rng.uniform(0.4, 1.1) if irregular else 0.8 * rng.uniform(0.97, 1.03)
    waves = ((-0.2, 0.15, 0.025), (0.0, 1.2, 0.012), (0.03, -0.25, 0.01), (0.3, 0.3, 0.045))
    lead = np.zeros(n)
    for beat in beats:
        for offset_s, amplitude_mv, width_s in waves:
            lead += amplitude_mv * np.exp(-0.5 * ((t - beat - offset_s) / width_s) ** 2)
    lead += 0.15 * np.sin(2 * np.pi * 0.25 * t) + 0.02 * rng.standard_normal(n)
    gains = np.linspace(1.0, 0.6, n_leads)[:, None]
    return (gains * lead[None, :] + 0.01 * rng.standard_normal((n_leads, n))).astype(np.float32)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m features.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=500, help="calls per measurement")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    for irregular in (False, True):
        window = synthetic_ecg(irregular=irregular)
        result = extract(window, 250.0)
        times = timeit.repeat(lambda w=window: extract(w, 250.0), number=args.number, repeat=args.repeat)
        per_call_ms = np.array(times) / args.number * 1e3
        kind = "irregular" if irregular else "regular"
        print(
            f"extract 2x2500 {kind:9s}: best {per_call_ms.min():.3f} ms, median {np.median(per_call_ms):.3f} ms "
            f"per window ({result.r_peaks.size} beats, ok={result.quality.ok})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
