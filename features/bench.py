"""Benchmark of :func:`features.extract` (and, with ``--batch``, :func:`features.extract_batch`).

Run ``python -m features.bench``: per-call wall times of ``extract`` on synthetic 10-s, 2-lead, 250 Hz
windows. ``python -m features.bench --batch``: ms per window of ``extract`` one window at a time against
``extract_batch`` at batch sizes 1, 16, 64 and 256, on 10-s two-lead MIT-BIH windows resampled to 250 Hz
(``--data-dir``, default ``$HOLMES_DATA_DIR`` or ``../shared/data``; synthetic windows when the records
are not there). Prints times and whether the batch results equal the one-by-one results; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import timeit
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from features.window import WindowFeatures, extract, extract_batch

__all__ = ["main", "mitdb_windows", "synthetic_ecg"]

BENCH_RECORDS = ("100", "105", "108", "119", "201", "203")


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


def mitdb_windows(
    data_dir: Path, n_windows: int, records: Sequence[str] = BENCH_RECORDS, fs_hz: float = 250.0
) -> list[np.ndarray]:
    """``n_windows`` 10-s two-lead float32 windows (mV) from MIT-BIH records, resampled from 360 Hz to
    250 Hz as the simulator does, taken in turn from each record at a 5-s hop; ``[]`` without the data."""
    import wfdb  # noqa: PLC0415 - only the --batch benchmark reads records
    from scipy.signal import resample_poly  # noqa: PLC0415

    if not (data_dir / "mitdb").is_dir():
        return []
    n = round(10.0 * fs_hz)
    hop = n // 2
    per_record = -(-n_windows // len(records))
    windows: list[np.ndarray] = []
    for name in records:
        path = str(data_dir / "mitdb" / name)
        length = wfdb.rdheader(path).sig_len
        record = wfdb.rdrecord(path, sampto=min(length, round((per_record * hop + n) * 360 / fs_hz) + 360))
        x = resample_poly(record.p_signal.T, 25, 36, axis=1).astype(np.float32)
        windows += [x[:, i * hop : i * hop + n] for i in range(per_record) if i * hop + n <= x.shape[1]]
    return windows[:n_windows]


def _same(a: WindowFeatures, b: WindowFeatures) -> bool:
    return (
        a.quality == b.quality
        and a.heart_rate_bpm == b.heart_rate_bpm
        and all(
            x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
            for x, y in ((a.r_peaks, b.r_peaks), (a.rr_s, b.rr_s), (a.rr_vector, b.rr_vector))
        )
    )


def _bench_batch(windows: list[np.ndarray], sizes: Sequence[int], repeat: int, fs_hz: float = 250.0) -> None:
    def one_by_one() -> list[WindowFeatures]:
        return [extract(w, fs_hz) for w in windows]

    def batched(size: int) -> list[WindowFeatures]:
        out: list[WindowFeatures] = []
        for start in range(0, len(windows), size):
            out += extract_batch(windows[start : start + size], fs_hz)
        return out

    cases = {"extract": one_by_one} | {f"extract_batch({size})": (lambda s=size: batched(s)) for size in sizes}
    reference = one_by_one()
    identical = all(all(map(_same, reference, run())) for name, run in cases.items() if name != "extract")
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):  # interleaved, so that load on the machine hits every case alike
        for name, run in cases.items():
            times[name].append(timeit.timeit(run, number=1) / len(windows) * 1e3)
    base = min(times["extract"])
    for name, ms in times.items():
        print(
            f"{name:20s}: best {min(ms):.3f} ms, median {np.median(ms):.3f} ms per window "
            f"({base / min(ms):.2f}x extract)"
        )
    print(f"extract_batch results identical to extract: {identical}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m features.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=500, help="calls per measurement (without --batch)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--batch",
        type=int,
        nargs="*",
        metavar="SIZE",
        help="compare extract with extract_batch at these batch sizes (default 1 16 64 256)",
    )
    parser.add_argument("--windows", type=int, default=512, help="windows for --batch")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("HOLMES_DATA_DIR", "../shared/data")), help="for --batch"
    )
    args = parser.parse_args(argv)
    if args.batch is not None:
        windows = mitdb_windows(args.data_dir, args.windows)
        if windows:
            print(f"{len(windows)} MIT-BIH 10-s two-lead windows at 250 Hz (records {', '.join(BENCH_RECORDS)})")
        else:
            print(f"no MIT-BIH records under {args.data_dir}: {args.windows} synthetic windows")
            windows = [synthetic_ecg(irregular=bool(i % 2), seed=i) for i in range(args.windows)]
        _bench_batch(windows, args.batch or [1, 16, 64, 256], args.repeat)
        return 0
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
