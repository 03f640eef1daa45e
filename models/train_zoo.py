"""Train the whole zoo (:data:`models.zoo.ZOO_SPECS`) and write its artifacts; the RR random-forest baseline.

Usage::

    python -m models.train_zoo --data-dir ../shared/data --out models/artifacts [--only NAME ...] [--seed 0]

For every spec: train on the training split of CinC 2017 and MIT-BIH (:mod:`models.windows`), early-stop on
the validation split, fit a calibration temperature on the validation split, then write the record:
weights (``<stem>.pt``, a weights-only state dict), the per-window validation and test predictions
(``<stem>.npz``), the metrics computed from them, a latency profile and the card (``<stem>.json``).
The test split is only ever predicted, never used to fit, stop or select.

Reproducibility: everything is seeded (torch and the numpy batch sampler), deterministic algorithms are
enforced and training runs on :data:`TRAIN_THREADS` threads, so the same seed gives the same weights
on the same CPU and torch build. Budgets are counted in optimiser steps, not seconds.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import math
import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import expit
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from features import RR_FEATURE_NAMES
from models.card import InputContract, ModelCard
from models.errors import ModelError
from models.evaluation import expected_calibration_error, fit_temperature_keeping_ece, nll, probability_metrics
from models.rr_af import RRAFNet
from models.windows import DATASETS, Dataset, SignalStore, WindowTable, load_tables
from models.zoo import FAMILIES, ZOO_SPECS, ModelBatch, ServedModel, ZooSpec, load_served, profile_latency
from models.zoo.records import Predictions, metrics_by_split, write_predictions
from models.zoo.served import SERVING_FS_HZ

__all__ = [
    "LATENCY_THREADS",
    "TRAIN_THREADS",
    "ZooData",
    "fit_spec",
    "format_table",
    "load_zoo_data",
    "main",
    "record_model",
    "rows_from_cards",
    "train_rf_baseline",
    "train_zoo",
]

TRAIN_THREADS = 2
"""Torch intra-op threads while training (part of what makes a seed reproduce the weights)."""
LATENCY_THREADS = 1
"""Torch threads while profiling: on this 2-core machine, shared with the broker, the API and the
simulator, a second intra-op thread mostly waits for a core (10-15 ms stalls); serve with one."""
PREDICT_CHUNK = 256
WARMUP_FRACTION = 0.03
GRAD_CLIP = 1.0


@dataclass(frozen=True, slots=True)
class ZooData:
    """Signal stores and window tables of both data sets (see :mod:`models.windows`)."""

    stores: dict[str, SignalStore]
    tables: dict[str, dict[int, WindowTable]]

    def table(self, dataset: str, window_s: int) -> WindowTable:
        return self.tables[dataset][window_s]


def load_zoo_data(data_dir: Path | str, *, progress: bool = True, cache_dir: Path | None = None) -> ZooData:
    """Load (building and caching on first use) the windows of CinC 2017 and MIT-BIH."""
    stores: dict[str, SignalStore] = {}
    tables: dict[str, dict[int, WindowTable]] = {}
    for dataset in DATASETS:
        stores[dataset], tables[dataset] = load_tables(data_dir, dataset, progress=progress, cache_dir=cache_dir)
    return ZooData(stores, tables)


@contextmanager
def _deterministic(seed: int, threads: int) -> Iterator[None]:
    previous = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.set_num_threads(previous[1])


def _scored_datasets(spec_or_contract: ZooSpec | InputContract) -> tuple[Dataset, ...]:
    """Data sets a model is measured on: two-lead models need MIT-BIH's second lead."""
    return ("mitdb",) if spec_or_contract.leads == 2 and spec_or_contract.kind == "waveform" else DATASETS


def _module_kwargs(spec: ZooSpec) -> dict[str, Any]:
    if spec.family == "rr-mlp":
        return {"n_features": len(RR_FEATURE_NAMES), **spec.architecture}
    return {"leads": spec.leads, **spec.architecture}


def _build(spec: ZooSpec) -> torch.nn.Module:
    try:
        cls = FAMILIES[spec.family]
    except KeyError:
        raise ModelError(f"unknown family {spec.family!r} in spec {spec.name}") from None
    return cls(**_module_kwargs(spec))


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(labels, scores)) if 0 < labels.sum() < labels.size else math.nan


def _uses_rr(module: torch.nn.Module) -> bool:
    return bool(getattr(module, "uses_rr", False))


def _call(module: torch.nn.Module, x: np.ndarray, rr: np.ndarray) -> torch.Tensor:
    xt = torch.from_numpy(x)
    return module(xt, torch.from_numpy(rr)) if _uses_rr(module) else module(xt)


def _waveform_logits(module: torch.nn.Module, waves: np.ndarray, rr: np.ndarray) -> np.ndarray:
    module.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, waves.shape[0], PREDICT_CHUNK):
            out.append(_call(module, waves[i : i + PREDICT_CHUNK], rr[i : i + PREDICT_CHUNK]).numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def _halves(n: int) -> tuple[int, int]:
    return n - n // 2, n // 2


def _cosine(step: int, total: int) -> float:
    warm = max(1, int(WARMUP_FRACTION * total))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def _fit_waveform(spec: ZooSpec, data: ZooData, seed: int, progress: bool) -> tuple[torch.nn.Module, dict[str, Any]]:
    width = spec.window_s * SERVING_FS_HZ
    rng = np.random.default_rng(seed)
    module = _build(spec)
    if _uses_rr(module):
        x_rr, _ = _rr_split(data, spec.window_s, "train")
        module.set_rr_standardisation(  # type: ignore[operator]
            torch.from_numpy(x_rr.mean(axis=0)), torch.from_numpy(x_rr.std(axis=0))
        )
    pools = {}
    for dataset in DATASETS:
        table = data.table(dataset, spec.window_s)
        pools[dataset] = np.flatnonzero(table.usable("train"))
    # Validation windows with as many leads as each data set has (CinC: one), for early stopping only.
    val: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for dataset in DATASETS:
        table = data.table(dataset, spec.window_s)
        idx = np.flatnonzero(table.usable("val"))
        leads = min(spec.leads, data.stores[dataset].n_leads)
        waves = data.stores[dataset].windows(table.row[idx], table.start[idx], width, leads)
        val[dataset] = (waves, table.rr[idx], table.label[idx])

    optimiser = torch.optim.AdamW(module.parameters(), lr=spec.learning_rate, weight_decay=spec.weight_decay)
    total = spec.max_epochs * spec.steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: _cosine(step, total))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    best = (-math.inf, 0, copy.deepcopy(module.state_dict()))
    history: list[float] = []
    bar = tqdm(range(spec.max_epochs), desc=spec.name, unit="epoch", leave=False, disable=not progress)
    for epoch in bar:
        module.train()
        running = 0.0
        for _ in range(spec.steps_per_epoch):
            parts, rr_parts, labels = [], [], []
            for dataset, size in zip(DATASETS, _halves(spec.batch_size), strict=True):
                table = data.table(dataset, spec.window_s)
                store = data.stores[dataset]
                idx = np.sort(rng.choice(pools[dataset], size=size, replace=False))
                parts.append(
                    torch.from_numpy(
                        store.windows(table.row[idx], table.start[idx], width, min(spec.leads, store.n_leads))
                    )
                )
                rr_parts.append(torch.from_numpy(table.rr[idx]) if _uses_rr(module) else None)
                labels.append(table.label[idx])
            y = torch.from_numpy(np.concatenate(labels).astype(np.float32))
            optimiser.zero_grad(set_to_none=True)
            loss = loss_fn(module.forward_parts(parts, rr_parts), y)  # type: ignore[operator]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), GRAD_CLIP)
            optimiser.step()
            schedule.step()
            running += loss.item()
        aucs = [_auc(y_val, _waveform_logits(module, x_val, rr_val)) for x_val, rr_val, y_val in val.values()]
        score = float(np.nanmean(aucs))
        history.append(round(score, 4))
        bar.set_postfix(loss=f"{running / spec.steps_per_epoch:.3f}", val_auc=f"{score:.4f}")
        if score > best[0]:
            best = (score, epoch, copy.deepcopy(module.state_dict()))
        elif epoch - best[1] >= spec.patience:
            break
    bar.close()
    module.load_state_dict(best[2])
    module.eval()
    info = {
        "best_epoch": best[1] + 1,
        "epochs_run": len(history),
        "early_stopping": "mean validation ROC-AUC over CinC and MIT-BIH",
        "val_auc_history": history,
        "steps_per_epoch": spec.steps_per_epoch,
        "batch_size": spec.batch_size,
        "sampling": "every batch half CinC, half MIT-BIH windows, uniform within each data set",
    }
    return module, info


def _rr_split(data: ZooData, window_s: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for dataset in DATASETS:
        table = data.table(dataset, window_s)
        m = table.usable(split)
        xs.append(table.rr[m])
        ys.append(table.label[m])
    return np.concatenate(xs), np.concatenate(ys)


def _fit_rr(spec: ZooSpec, data: ZooData, seed: int, progress: bool) -> tuple[torch.nn.Module, dict[str, Any]]:
    x_train, y_train = _rr_split(data, spec.window_s, "train")
    x_val, y_val = _rr_split(data, spec.window_s, "val")
    module = _build(spec)
    assert isinstance(module, RRAFNet)
    module.set_standardisation(torch.from_numpy(x_train.mean(axis=0)), torch.from_numpy(x_train.std(axis=0)))
    generator = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train.astype(np.float32))
    xv, yv = torch.from_numpy(x_val), torch.from_numpy(y_val.astype(np.float32))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    optimiser = torch.optim.AdamW(module.parameters(), lr=spec.learning_rate, weight_decay=spec.weight_decay)
    best = (math.inf, 0, copy.deepcopy(module.state_dict()))
    bar = tqdm(range(spec.max_epochs), desc=spec.name, unit="epoch", leave=False, disable=not progress)
    epochs = 0
    for epoch in bar:
        epochs += 1
        module.train()
        for batch in torch.randperm(xt.shape[0], generator=generator).split(spec.batch_size):
            optimiser.zero_grad(set_to_none=True)
            loss_fn(module(xt[batch]), yt[batch]).backward()
            optimiser.step()
        module.eval()
        with torch.inference_mode():
            val_loss = float(loss_fn(module(xv), yv))
        bar.set_postfix(val_loss=f"{val_loss:.4f}")
        if val_loss < best[0] - 1e-5:
            best = (val_loss, epoch, copy.deepcopy(module.state_dict()))
        elif epoch - best[1] >= spec.patience:
            break
    bar.close()
    module.load_state_dict(best[2])
    module.eval()
    info = {
        "best_epoch": best[1] + 1,
        "epochs_run": epochs,
        "best_val_loss": round(best[0], 6),
        "early_stopping": "validation loss (CinC + MIT-BIH)",
        "batch_size": spec.batch_size,
    }
    return module, info


def _fit_rr_af_v1(data_dir: Path, seed: int, progress: bool) -> tuple[torch.nn.Module, dict[str, Any]]:
    from models.train_rr import build_feature_table, fit_rr_af

    table = build_feature_table(data_dir, 10.0, progress=progress)
    module, info = fit_rr_af(table, seed, progress=False)
    return module, {**info, "recipe": "models.train_rr (non-overlapping 10-s windows, validation loss)"}


def fit_spec(
    spec: ZooSpec, data: ZooData, seed: int = 0, *, data_dir: Path | None = None, progress: bool = False
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train one spec and calibrate it: a module in eval mode with its temperature set, and a summary.

    Parameters
    ----------
    spec : ZooSpec
        What to train.
    data : ZooData
        The cached windows.
    seed : int
        Seed of torch and of the batch sampler.
    data_dir : pathlib.Path, optional
        Needed by the ``rr-af-v1`` trainer (it reads its own feature table).
    progress : bool
        Show a per-epoch progress bar.

    Returns
    -------
    (torch.nn.Module, dict)
        The calibrated module and ``{"training": ..., "calibration": ...}``.
    """
    with _deterministic(seed, TRAIN_THREADS):
        if spec.trainer == "rr-af-v1":
            if data_dir is None:
                raise ModelError("the rr-af-v1 trainer needs data_dir")
            module, info = _fit_rr_af_v1(data_dir, seed, progress)
        elif spec.trainer != "zoo":
            raise ModelError(f"unknown trainer {spec.trainer!r}")
        elif spec.kind == "rr":
            module, info = _fit_rr(spec, data, seed, progress)
        else:
            module, info = _fit_waveform(spec, data, seed, progress)
        # rr-af v1 keeps the temperature its own recipe fitted, so its weights file stays bit-identical.
        calibration = _calibrate(spec, module, data, refit=spec.trainer != "rr-af-v1")
    return module, {"training": info, "calibration": calibration}


def _val_logits(spec: ZooSpec, module: torch.nn.Module, data: ZooData) -> tuple[np.ndarray, np.ndarray]:
    logits, labels = [], []
    for dataset in _scored_datasets(spec):
        table = data.table(dataset, spec.window_s)
        idx = np.flatnonzero(table.usable("val"))
        if spec.kind == "rr":
            with torch.inference_mode():
                z = module(torch.from_numpy(table.rr[idx])).numpy().astype(np.float64)
        else:
            store = data.stores[dataset]
            waves = store.windows(table.row[idx], table.start[idx], spec.window_s * SERVING_FS_HZ, spec.leads)
            z = _waveform_logits(module, waves, table.rr[idx])
        logits.append(z)
        labels.append(table.label[idx])
    return np.concatenate(logits), np.concatenate(labels)


def _calibrate(spec: ZooSpec, module: torch.nn.Module, data: ZooData, *, refit: bool = True) -> dict[str, Any]:
    """Fit the temperature on the validation windows the model is measured on; keep it only if it helps ECE.

    The temperature minimises the validation NLL; when that does not also lower the validation ECE (a
    small-sample effect when the model is already calibrated, T close to 1) the model keeps T = 1 rather
    than trade one for the other (:func:`models.evaluation.fit_temperature_keeping_ece`, which rr-af v1's own
    recipe uses too). So calibration never worsens the validation ECE.
    """
    logits, labels = _val_logits(spec, module, data)
    ece_before = expected_calibration_error(expit(logits), labels)
    if refit:
        temperature, fitted = fit_temperature_keeping_ece(logits, labels)
        module.set_temperature(temperature)  # type: ignore[operator]
    else:
        fitted = temperature = float(module.temperature)  # type: ignore[arg-type]
    return {
        "method": "temperature",
        "temperature": round(float(temperature), 4),
        "temperature_nll_fit": round(float(fitted), 4),
        "fitted_on": "validation windows of " + " + ".join(_scored_datasets(spec)),
        "val_ece_before": round(ece_before, 4),
        "val_ece_after": round(expected_calibration_error(expit(logits / temperature), labels), 4),
        "val_nll_before": round(nll(logits, labels), 4),
        "val_nll_after": round(nll(logits, labels, temperature), 4),
    }


def _predictions(served: ServedModel, data: ZooData) -> Predictions:
    cols: dict[str, list[np.ndarray]] = {name: [] for name in Predictions.__slots__}
    c = served.contract
    width = c.n_samples
    for dataset in _scored_datasets(c):
        table = data.table(dataset, int(round(c.window_s)))
        store = data.stores[dataset]
        for split in ("val", "test"):
            idx = np.flatnonzero(table.usable(split))
            for i in range(0, idx.size, PREDICT_CHUNK):
                chunk = idx[i : i + PREDICT_CHUNK]
                batch = ModelBatch(store.windows(table.row[chunk], table.start[chunk], width), table.rr[chunk])
                cols["probability"].append(served.predict(batch))
                cols["logit"].append(served.logits(batch))
            n = idx.size
            cols["dataset"].append(np.full(n, dataset))
            cols["split"].append(np.full(n, split))
            cols["record"].append(table.record[idx])
            cols["start"].append(table.start[idx])
            cols["end"].append(table.end[idx])
            cols["label"].append(table.label[idx])
    return Predictions(**{k: np.concatenate(v) for k, v in cols.items()})


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def record_model(
    spec: ZooSpec,
    module: torch.nn.Module,
    fit_info: dict[str, Any],
    data: ZooData,
    out_dir: Path,
    seed: int,
    *,
    profile: bool = True,
) -> dict[str, Any]:
    """Write a trained model's weights, predictions and card, and return its summary row.

    Parameters
    ----------
    spec : ZooSpec
        The spec it was trained from.
    module : torch.nn.Module
        Calibrated module in eval mode.
    fit_info : dict
        From :func:`fit_spec`.
    data : ZooData
        The cached windows (validation and test predictions are made on them).
    out_dir : pathlib.Path
        Artifact folder.
    seed : int
        Training seed (recorded).
    profile : bool
        Measure the latency profile (batch sizes 1..256 on one CPU thread).

    Returns
    -------
    dict
        ``name``, ``family``, ``window_s``, ``leads``, ``kind``, ``params``, ``latency_ms``, ``metrics``,
        ``card_path``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path = out_dir / f"{spec.stem}.pt"
    torch.save(module.state_dict(), weights_path)
    contract = InputContract(spec.leads, SERVING_FS_HZ, float(spec.window_s), spec.kind)
    params = int(sum(p.numel() for p in module.parameters()))
    card = ModelCard(
        name=spec.name,
        version=spec.version,
        family=spec.family,
        input=contract,
        feature_names=RR_FEATURE_NAMES if spec.kind == "rr" else (),
        architecture=_module_kwargs(spec) if spec.family != "rr-mlp" else _rr_architecture(module),
        weights_file=weights_path.name,
        weights_sha256=hashlib.sha256(weights_path.read_bytes()).hexdigest(),
        metrics={},
        seed=seed,
        trained_at=datetime.now(UTC).replace(microsecond=0).isoformat(),
        params=params,
    )
    served = ServedModel(module, card)
    with _deterministic(seed, LATENCY_THREADS):
        predictions = _predictions(served, data)
        latency = profile_latency(served) if profile else {}
    predictions_path = out_dir / f"{spec.stem}.npz"
    predictions_sha = write_predictions(predictions_path, predictions)
    metrics = metrics_by_split(predictions)
    calibration = dict(fit_info["calibration"])
    card = ModelCard(
        **{
            **{f: getattr(card, f) for f in ModelCard.__slots__},
            "metrics": metrics,
            "calibration": calibration,
            "latency_ms": latency,
            "predictions_file": predictions_path.name,
            "predictions_sha256": predictions_sha,
            "extra": {
                "temperature": calibration["temperature"],
                "training": {
                    **fit_info["training"],
                    "optimiser": "AdamW",
                    "learning_rate": spec.learning_rate,
                    "weight_decay": spec.weight_decay,
                    "max_epochs": spec.max_epochs,
                    "patience": spec.patience,
                    "threads": TRAIN_THREADS,
                    "torch": torch.__version__,
                },
                "latency_device": f"{_cpu_name()}, torch {torch.__version__}, {LATENCY_THREADS} thread",
                "data": {
                    "sources": {
                        "cinc": "PhysioNet/CinC 2017 (A positive; N, O negative; ~ excluded)",
                        "mitdb": "MIT-BIH Arrhythmia ((AFIB, (AFL positive)",
                    },
                    "splits": "models/SPLITS.md",
                    "windows": "models/windows.py: quality-ok, single-rhythm; train on a 5-s grid, "
                    "validation/test on a 10-s end grid",
                    "scored_on": list(_scored_datasets(contract)),
                },
            },
        }
    )
    card_path = out_dir / f"{spec.stem}.json"
    card.write(card_path)
    load_served(card_path)  # the written artifact must load (checksum, weights-only, architecture)
    return {
        "name": spec.name,
        "family": spec.family,
        "window_s": spec.window_s,
        "leads": spec.leads,
        "kind": spec.kind,
        "params": params,
        "latency_ms": latency,
        "metrics": metrics,
        "calibration": calibration,
        "card_path": str(card_path),
    }


def _rr_architecture(module: torch.nn.Module) -> dict[str, Any]:
    assert isinstance(module, RRAFNet)
    return {"n_features": module.n_features, "hidden": list(module.hidden), "dropout": module.dropout}


def train_zoo(
    data_dir: Path | str,
    out_dir: Path | str,
    seed: int = 0,
    only: Sequence[str] | None = None,
    progress: bool = True,
    *,
    cache_dir: Path | None = None,
    profile: bool = True,
    table: bool = True,
) -> list[dict[str, Any]]:
    """Train every zoo spec (or the ``only`` ones), write their artifacts and print the zoo table.

    Parameters
    ----------
    data_dir : path
        Folder holding ``cinc2017/`` and ``mitdb/``.
    out_dir : path
        Artifact folder (flat; created if missing).
    seed : int
        Seed of every model.
    only : sequence of str, optional
        Names of the specs to train (all by default).
    progress : bool
        Progress bars (data cache, one per model) and the final table on stdout.
    cache_dir : pathlib.Path, optional
        Window cache root (default ``~/.cache/holmes``).
    profile : bool
        Measure latency profiles.
    table : bool
        Print the zoo table at the end (with ``progress``).

    Returns
    -------
    list of dict
        One summary row per model (see :func:`record_model`), plus ``train_s`` (wall seconds).
    """
    specs = list(ZOO_SPECS)
    if only:
        unknown = set(only) - {s.name for s in specs}
        if unknown:
            raise ModelError(f"unknown zoo models {sorted(unknown)}; known: {[s.name for s in specs]}")
        specs = [s for s in specs if s.name in set(only)]
    data = load_zoo_data(data_dir, progress=progress, cache_dir=cache_dir)
    rows = []
    overall = tqdm(specs, desc="zoo", unit="model", disable=not progress)
    for spec in overall:
        overall.set_postfix_str(spec.name)
        start = time.perf_counter()
        module, info = fit_spec(spec, data, seed, data_dir=Path(data_dir), progress=progress)
        row = record_model(spec, module, info, data, Path(out_dir), seed, profile=profile)
        row["train_s"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        if progress:
            tqdm.write(_short(row))
    overall.close()
    if progress and table:
        print(format_table(rows))
    return rows


def _short(row: dict[str, Any]) -> str:
    m = row["metrics"]
    parts = [f"{row['name']}: {row['train_s']:.0f} s"]
    for key in ("val/cinc", "val/mitdb", "test/cinc", "test/mitdb"):
        if key in m:
            parts.append(f"{key} {m[key]['roc_auc']:.4f}")
    return ", ".join(parts)


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def format_table(rows: Sequence[dict[str, Any]], baselines: Sequence[dict[str, Any]] = ()) -> str:
    """Markdown zoo table: family, window, leads, params, ms at batch 1 and 64, val/test ROC-AUC and PR-AUC."""
    header = (
        "| model | family | window | leads | params | ms b1 | ms/win b64 | "
        "val ROC C | val PR C | test ROC C | test PR C | val ROC M | val PR M | test ROC M | test PR M |"
    )
    lines = [header, "|" + "---|" * 15]
    for row in [*rows, *baselines]:
        m = row["metrics"]
        lat = row.get("latency_ms") or {}
        b64 = lat.get(64)
        cells = [
            row["name"],
            row["family"],
            f"{row['window_s']} s",
            str(row["leads"]),
            f"{row['params']:,}" if row.get("params") else "-",
            _fmt(lat.get(1), 3) if lat else "-",
            _fmt(b64 / 64 if b64 is not None else None, 4),
        ]
        for dataset in ("cinc", "mitdb"):
            for split in ("val", "test"):
                entry = m.get(f"{split}/{dataset}")
                cells += [_fmt(entry and entry["roc_auc"]), _fmt(entry and entry["pr_auc"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rows_from_cards(artifact_dir: Path | str) -> list[dict[str, Any]]:
    """Table rows (as :func:`format_table` takes them) rebuilt from the cards of an artifact folder."""
    rows = []
    for model in sorted(
        (load_served(p) for p in sorted(Path(artifact_dir).glob("*.json"))), key=lambda m: _spec_order(m.name)
    ):
        c = model.contract
        rows.append(
            {
                "name": model.name,
                "family": model.family,
                "window_s": int(round(c.window_s)),
                "leads": c.leads,
                "kind": c.kind,
                "params": model.card.params,
                "latency_ms": model.card.latency_ms,
                "metrics": model.card.metrics,
            }
        )
    return rows


def _spec_order(name: str) -> tuple[int, str]:
    names = [s.name for s in ZOO_SPECS]
    return (names.index(name), name) if name in names else (len(names), name)


def train_rf_baseline(
    data_dir: Path | str,
    seed: int = 0,
    window_s: int = 10,
    *,
    data: ZooData | None = None,
    progress: bool = True,
    n_estimators: int = 300,
) -> dict[str, Any]:
    """RR-feature random forest (scikit-learn) on the zoo's windows: the baseline of the report, not served.

    Trained on the same training windows' RR vectors as the ``rr-mlp`` models; no calibration.

    Parameters
    ----------
    data_dir : path
        Folder holding ``cinc2017/`` and ``mitdb/``.
    seed : int
        ``random_state`` of the forest.
    window_s : int
        10 or 30.
    data : ZooData, optional
        Already loaded windows.
    progress : bool
        Progress bars while loading.
    n_estimators : int
        Trees.

    Returns
    -------
    dict
        A table row: ``name``, ``family``, ``window_s``, ``leads``, ``kind``, ``params`` (0),
        ``metrics`` (per split and data set) and ``train_s``.
    """
    from sklearn.ensemble import RandomForestClassifier

    data = data or load_zoo_data(data_dir, progress=progress)
    start = time.perf_counter()
    x_train, y_train = _rr_split(data, window_s, "train")
    forest = RandomForestClassifier(
        n_estimators=n_estimators, min_samples_leaf=2, max_features="sqrt", n_jobs=1, random_state=seed
    )
    forest.fit(x_train, y_train)
    metrics: dict[str, Any] = {}
    for split in ("val", "test"):
        for dataset in DATASETS:
            table = data.table(dataset, window_s)
            m = table.usable(split)
            p = forest.predict_proba(table.rr[m])[:, 1]
            values = probability_metrics(p, table.label[m])
            metrics[f"{split}/{dataset}"] = {
                k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v) for k, v in values.items()
            }
    return {
        "name": f"rf-rr-{window_s}s (baseline)",
        "family": "random-forest",
        "window_s": window_s,
        "leads": 1,
        "kind": "rr",
        "params": 0,
        "latency_ms": {},
        "metrics": metrics,
        "train_s": round(time.perf_counter() - start, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: train the zoo (and the RF baselines), write the artifacts, print the table."""
    parser = argparse.ArgumentParser(prog="python -m models.train_zoo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("HOLMES_DATA_DIR", "../shared/data")),
        help="folder holding cinc2017/ and mitdb/ (default: $HOLMES_DATA_DIR or ../shared/data)",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "artifacts", help="artifact folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, metavar="NAME", help="train only these zoo models")
    parser.add_argument("--no-baseline", action="store_true", help="skip the RR random-forest baseline")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--cache-dir", type=Path, default=None, help="window cache (default ~/.cache/holmes)")
    parser.add_argument(
        "--table-only", action="store_true", help="train nothing: print the table of the cards in --out (+ baselines)"
    )
    args = parser.parse_args(argv)
    progress = not args.no_progress
    start = time.perf_counter()
    try:
        if args.table_only:
            rows = rows_from_cards(args.out)
        else:
            rows = train_zoo(
                args.data_dir, args.out, args.seed, args.only, progress=progress, cache_dir=args.cache_dir, table=False
            )
        baselines = []
        if not args.no_baseline:
            data = load_zoo_data(args.data_dir, progress=False, cache_dir=args.cache_dir)
            baselines = [train_rf_baseline(args.data_dir, args.seed, w, data=data) for w in (10, 30)]
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_table(rows, baselines))
    verb = "listed" if args.table_only else "trained"
    print(f"{verb} {len(rows)} models in {time.perf_counter() - start:.0f} s; artifacts in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
