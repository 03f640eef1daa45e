"""Train, calibrate and evaluate the RR-feature AF detector (``rr-af`` v1) and write its artifacts.

Usage::

    python -m models.train_rr --data-dir ../shared/data --out models/artifacts
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import expit
from tqdm.auto import tqdm

import features
from features import RR_FEATURE_NAMES, FeatureError
from models.card import InputContract, ModelCard
from models.data import cinc2017_labels, load_cinc2017, mitdb_record_names, mitdb_windows
from models.errors import ModelError
from models.evaluation import binary_metrics, expected_calibration_error, fit_temperature_keeping_ece
from models.rr_af import RRAFNet
from models.splits import SPLITS, cinc_split, mitdb_split

__all__ = ["ARTIFACT_STEM", "FeatureTable", "build_feature_table", "fit_rr_af", "format_metrics", "main", "train_rr_af"]

ARTIFACT_STEM = "rr_af_v1"
MODEL_NAME = "rr-af"
MODEL_VERSION = 1
MODEL_FAMILY = "rr-mlp"
FS_HZ = 250.0
HIDDEN = (32, 16)
DROPOUT = 0.1
BATCH_SIZE = 256
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-3
MAX_EPOCHS = 300
PATIENCE = 30
SOURCES = ("cinc", "mitdb")


@dataclass(frozen=True, slots=True)
class FeatureTable:
    """RR feature vectors of all labelled windows, one row per window.

    Attributes
    ----------
    x : numpy.ndarray
        float32, shape ``(n, len(RR_FEATURE_NAMES))``.
    y : numpy.ndarray
        int8 AF label (1 = AF or flutter).
    source, record, split : numpy.ndarray
        str: ``"cinc"`` or ``"mitdb"``, record name, ``"train"``/``"val"``/``"test"``.
    ok : numpy.ndarray
        bool: the window passed the quality checks.
    straddles : numpy.ndarray
        bool: the rhythm changes inside the window (MIT-BIH only).
    """

    x: np.ndarray
    y: np.ndarray
    source: np.ndarray
    record: np.ndarray
    split: np.ndarray
    ok: np.ndarray
    straddles: np.ndarray

    def usable(self, split: str, source: str | None = None) -> np.ndarray:
        """Mask of quality-ok, single-rhythm windows of a split (and source)."""
        mask = (self.split == split) & self.ok & ~self.straddles
        return mask if source is None else mask & (self.source == source)


def _cache_key(data_dir: Path, window_s: float, fs_hz: float) -> str:
    digest = hashlib.sha256()
    digest.update(f"{data_dir.resolve()}|{window_s}|{fs_hz}|{RR_FEATURE_NAMES}".encode())
    for path in sorted(Path(features.__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def _default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "holmes"


def build_feature_table(
    data_dir: Path | str,
    window_s: float = 10.0,
    fs_hz: float = FS_HZ,
    *,
    progress: bool = True,
    cache_dir: Path | None = None,
    splits: Sequence[str] = SPLITS,
) -> FeatureTable:
    """Extract ``features.extract(...).rr_vector`` for non-overlapping windows of both data sets.

    CinC 2017 windows carry the record label (A positive; N and O negative; ``~`` records are
    skipped); MIT-BIH windows carry the rhythm-annotation label (``(AFIB``/``(AFL`` over half the
    window). With ``cache_dir`` (or the default ``$XDG_CACHE_HOME/holmes``) the full table is cached,
    keyed by the data folder, window length, sample rate and the source of ``features``.

    Parameters
    ----------
    data_dir : path
        Folder holding ``cinc2017/`` and ``mitdb/``.
    window_s : float
        Window length and hop in seconds.
    fs_hz : float
        Sample rate of the windows in Hz.
    progress : bool
        Show tqdm progress bars.
    cache_dir : path, optional
        Cache folder; the default is used when None.
    splits : sequence of str
        Only records of these splits are processed (and nothing is cached unless all three are).

    Returns
    -------
    FeatureTable
    """
    data_dir = Path(data_dir)
    full = set(splits) == set(SPLITS)
    cache_file = None
    if full:
        cache_file = (cache_dir or _default_cache_dir()) / f"rr_features_{_cache_key(data_dir, window_s, fs_hz)}.npz"
        if cache_file.is_file():
            with np.load(cache_file, allow_pickle=False) as cached:
                return FeatureTable(**{name: cached[name] for name in FeatureTable.__slots__})

    width = round(window_s * fs_hz)
    rows: dict[str, list[Any]] = {name: [] for name in FeatureTable.__slots__}

    def add(vector: np.ndarray, label: bool, source: str, record: str, split: str, ok: bool, straddles: bool) -> None:
        for name, value in zip(
            FeatureTable.__slots__, (vector, int(label), source, record, split, ok, straddles), strict=True
        ):
            rows[name].append(value)

    labels = cinc2017_labels(data_dir)
    names = [name for name, label in labels.items() if label != "~" and cinc_split(name) in splits]
    for rec in load_cinc2017(data_dir, fs_hz, records=names, progress=progress):
        split = cinc_split(rec.name)
        for start in range(0, rec.signal_mv.shape[1] - width + 1, width):
            window = _window_features(rec.signal_mv[:, start : start + width], fs_hz)
            add(window[0], rec.label == "A", "cinc", rec.name, split, window[1], False)

    records = [r for r in mitdb_record_names(data_dir) if mitdb_split(r) in splits]
    for record in tqdm(records, desc="mitdb", unit="rec", disable=not progress):
        split = mitdb_split(record)
        for win in mitdb_windows(data_dir, record, window_s, window_s, fs_hz):
            window = _window_features(win.signal_mv, fs_hz)
            add(window[0], win.af, "mitdb", record, split, window[1], win.straddles_change)

    table = FeatureTable(
        x=np.asarray(rows["x"], dtype=np.float32).reshape(-1, len(RR_FEATURE_NAMES)),
        y=np.asarray(rows["y"], dtype=np.int8),
        source=np.asarray(rows["source"], dtype=str),
        record=np.asarray(rows["record"], dtype=str),
        split=np.asarray(rows["split"], dtype=str),
        ok=np.asarray(rows["ok"], dtype=bool),
        straddles=np.asarray(rows["straddles"], dtype=bool),
    )
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **{name: getattr(table, name) for name in FeatureTable.__slots__})
        tmp.replace(cache_file)
    return table


def _window_features(window: np.ndarray, fs_hz: float) -> tuple[np.ndarray, bool]:
    """RR vector and quality verdict of a window; an all-zero vector and False when it cannot be processed."""
    try:
        result = features.extract(window, fs_hz)
    except FeatureError:
        return np.zeros(len(RR_FEATURE_NAMES), dtype=np.float32), False
    return result.rr_vector, result.quality.ok


@contextmanager
def _deterministic(seed: int) -> Iterator[torch.Generator]:
    previous = torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    try:
        yield torch.Generator().manual_seed(seed)
    finally:
        torch.use_deterministic_algorithms(previous)


def _logits(model: RRAFNet, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy().astype(np.float64)


def _fit(
    model: RRAFNet,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    generator: torch.Generator,
    progress: bool,
) -> dict[str, Any]:
    xt = torch.from_numpy(x_train)
    yt = torch.from_numpy(y_train.astype(np.float32))
    xv = torch.from_numpy(x_val)
    yv = torch.from_numpy(y_val.astype(np.float32))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    optimiser = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    best_loss = math.inf
    best_state = copy.deepcopy(model.state_dict())
    best_epoch = 0
    bar = tqdm(range(MAX_EPOCHS), desc="train rr-af", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        for batch in torch.randperm(xt.shape[0], generator=generator).split(BATCH_SIZE):
            optimiser.zero_grad()
            loss = loss_fn(model(xt[batch]), yt[batch])
            loss.backward()
            optimiser.step()
        model.eval()
        with torch.inference_mode():
            val_loss = float(loss_fn(model(xv), yv))
        bar.set_postfix(val_loss=f"{val_loss:.4f}")
        if val_loss < best_loss - 1e-5:
            best_loss, best_epoch = val_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= PATIENCE:
            break
    bar.close()
    model.load_state_dict(best_state)
    return {"best_epoch": best_epoch + 1, "best_val_loss": round(best_loss, 6)}


def _round(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v) for k, v in values.items()}


def fit_rr_af(table: FeatureTable, seed: int = 0, *, progress: bool = False) -> tuple[RRAFNet, dict[str, Any]]:
    """Fit the MLP on the usable training windows of ``table`` and calibrate it on the validation ones.

    Seeded and deterministic: the same table and seed give bit-identical weights.

    Returns
    -------
    (RRAFNet, dict)
        The calibrated model in eval mode and the early-stopping summary (best epoch, validation loss).
    """
    train = table.usable("train")
    val = table.usable("val")
    if not train.any() or not val.any():
        raise ModelError("no usable training or validation windows")
    x_train = table.x[train]
    with _deterministic(seed) as generator:
        model = RRAFNet(len(RR_FEATURE_NAMES), hidden=HIDDEN, dropout=DROPOUT)
        model.set_standardisation(torch.from_numpy(x_train.mean(axis=0)), torch.from_numpy(x_train.std(axis=0)))
        fit_info = _fit(model, x_train, table.y[train], table.x[val], table.y[val], generator, progress)
    model.set_temperature(fit_temperature_keeping_ece(_logits(model, table.x[val]), table.y[val])[0])
    model.eval()
    return model, fit_info


def train_rr_af(
    data_dir: Path | str,
    out_dir: Path | str,
    seed: int = 0,
    window_s: float = 10.0,
    progress: bool = True,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """Train the RR-feature AF MLP on CinC 2017 + MIT-BIH and write ``rr_af_v1.pt`` / ``.json``.

    Windows of ``window_s`` seconds at 250 Hz that pass the quality checks (and, for MIT-BIH, lie in
    one rhythm episode) are used. Training is seeded and deterministic, early-stops on the validation
    loss, then a temperature is fitted on the validation logits (kept only when it does not raise their
    ECE). Metrics are computed on the
    validation and test splits per source.

    Parameters
    ----------
    data_dir : path
        Folder holding ``cinc2017/`` and ``mitdb/``.
    out_dir : path
        Where the artifacts are written (created if missing).
    seed : int
        Seed of torch and of the batch order.
    window_s : float
        Window length in seconds.
    progress : bool
        Show tqdm progress bars.
    cache_dir : path, optional
        Feature cache folder (default ``$XDG_CACHE_HOME/holmes``).

    Returns
    -------
    dict
        ``card`` (the JSON model card as a dict), ``metrics`` (``"val/cinc"``, ..., ``"test/all"`` ->
        n, n_pos, roc_auc, pr_auc, ece, brier, nll), ``weights_path``, ``card_path`` and ``coverage``
        (fraction of windows passing the quality checks, per split and source).
    """
    table = build_feature_table(data_dir, window_s, FS_HZ, progress=progress, cache_dir=cache_dir)
    model, fit_info = fit_rr_af(table, seed, progress=progress)
    temperature = float(model.temperature)
    train = table.usable("train")
    val = table.usable("val")
    val_logits = _logits(model, table.x[val])

    metrics: dict[str, Any] = {}
    for split in ("val", "test"):
        for source in (*SOURCES, None):
            mask = table.usable(split, source)
            if mask.any():
                key = f"{split}/{source or 'all'}"
                metrics[key] = _round(binary_metrics(_logits(model, table.x[mask]), table.y[mask], temperature))
    metrics["val/all"]["ece_uncalibrated"] = round(expected_calibration_error(expit(val_logits), table.y[val]), 4)
    coverage = {}
    for split in SPLITS:
        for source in SOURCES:
            windows = (table.split == split) & (table.source == source)
            if windows.any():
                coverage[f"{split}/{source}"] = round(float(table.ok[windows].mean()), 4)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights_path = out / f"{ARTIFACT_STEM}.pt"
    torch.save(model.state_dict(), weights_path)
    card = ModelCard(
        name=MODEL_NAME,
        version=MODEL_VERSION,
        family=MODEL_FAMILY,
        input=InputContract(leads=1, sample_rate_hz=int(FS_HZ), window_s=window_s, kind="rr"),
        feature_names=RR_FEATURE_NAMES,
        architecture={"n_features": len(RR_FEATURE_NAMES), "hidden": list(HIDDEN), "dropout": DROPOUT},
        weights_file=weights_path.name,
        weights_sha256=hashlib.sha256(weights_path.read_bytes()).hexdigest(),
        metrics=metrics,
        seed=seed,
        trained_at=datetime.now(UTC).replace(microsecond=0).isoformat(),
        extra={
            "temperature": round(temperature, 4),
            "training": {
                **fit_info,
                "optimiser": "AdamW",
                "learning_rate": LEARNING_RATE,
                "weight_decay": WEIGHT_DECAY,
                "batch_size": BATCH_SIZE,
            },
            "data": {
                "sources": {
                    "cinc": "PhysioNet/CinC 2017 (A positive; N, O negative; ~ excluded)",
                    "mitdb": "MIT-BIH Arrhythmia ((AFIB, (AFL positive)",
                },
                "splits": "models/splits.py",
                "windows": "non-overlapping; quality-ok; MIT-BIH windows inside one rhythm episode",
                "n_train": int(train.sum()),
                "n_train_pos": int(table.y[train].sum()),
                "coverage": coverage,
            },
        },
    )
    card_path = out / f"{ARTIFACT_STEM}.json"
    card_path.write_text(card.to_json(), encoding="utf-8")
    return {
        "card": json.loads(card.to_json()),
        "metrics": metrics,
        "weights_path": weights_path,
        "card_path": card_path,
        "coverage": coverage,
    }


def format_metrics(metrics: dict[str, Any]) -> str:
    """Plain-text table of the metrics of :func:`train_rr_af`."""
    header = f"{'split/source':<14}{'n':>7}{'AF':>6}{'ROC-AUC':>9}{'PR-AUC':>8}{'ECE':>8}{'Brier':>8}"
    lines = [header, "-" * len(header)]
    for key, m in metrics.items():
        lines.append(
            f"{key:<14}{m['n']:>7}{m['n_pos']:>6}{m['roc_auc']:>9.4f}{m['pr_auc']:>8.4f}{m['ece']:>8.4f}{m['brier']:>8.4f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: train, write the artifacts and print the metrics table."""
    parser = argparse.ArgumentParser(prog="python -m models.train_rr", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("HOLMES_DATA_DIR", "../shared/data")),
        help="folder holding cinc2017/ and mitdb/ (default: $HOLMES_DATA_DIR or ../shared/data)",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "artifacts", help="artifact folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window-s", type=float, default=10.0)
    parser.add_argument("--cache-dir", type=Path, default=None, help="feature cache (default ~/.cache/holmes)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        result = train_rr_af(
            args.data_dir, args.out, args.seed, args.window_s, progress=not args.no_progress, cache_dir=args.cache_dir
        )
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_metrics(result["metrics"]))
    temperature = result["card"]["extra"]["temperature"]
    print(f"temperature {temperature}; wrote {result['weights_path']} and {result['card_path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
