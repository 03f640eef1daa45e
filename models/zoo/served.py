"""Loaded, calibrated zoo models behind one call: ``ServedModel.predict(ModelBatch) -> probabilities``."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from scipy.signal import resample_poly
from torch import nn

import features
from features import RR_FEATURE_NAMES, FeatureError
from models.card import InputContract, ModelCard
from models.errors import ModelError

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "SERVING_FS_HZ",
    "ModelBatch",
    "ServedModel",
    "load_served",
    "load_zoo",
    "make_batch",
    "profile_latency",
    "warm_up",
]

SERVING_FS_HZ = 250
DEFAULT_BATCH_SIZES: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True, slots=True)
class ModelBatch:
    """What every model's ``predict`` takes: a batch of stream windows and their RR vectors.

    Attributes
    ----------
    waveforms : numpy.ndarray
        float32, shape ``(B, n_leads_available, n_samples)``, millivolts at 250 Hz, leads in stream order.
    rr_vectors : numpy.ndarray
        float32, shape ``(B, len(RR_FEATURE_NAMES))``: ``features.extract(window, 250).rr_vector``.
    """

    waveforms: np.ndarray
    rr_vectors: np.ndarray

    def __post_init__(self) -> None:
        if self.waveforms.ndim != 3:
            raise ModelError(f"waveforms must have shape (batch, leads, samples), got {self.waveforms.shape}")
        if self.rr_vectors.ndim != 2 or self.rr_vectors.shape[0] != self.waveforms.shape[0]:
            raise ModelError(
                f"rr_vectors must have shape ({self.waveforms.shape[0]}, n_features), got {self.rr_vectors.shape}"
            )

    def __len__(self) -> int:
        return int(self.waveforms.shape[0])

    def take(self, index: np.ndarray | slice) -> ModelBatch:
        """The sub-batch of the given rows."""
        return ModelBatch(self.waveforms[index], self.rr_vectors[index])


def _resample(signal: np.ndarray, fs_in_hz: float) -> np.ndarray:
    ratio = Fraction(SERVING_FS_HZ / fs_in_hz).limit_denominator(1000)
    if ratio == 1:
        return np.asarray(signal, dtype=np.float32)
    return resample_poly(signal, ratio.numerator, ratio.denominator, axis=-1).astype(np.float32)


def make_batch(
    signals_mv: Sequence[np.ndarray], sample_rate_hz: float, rr_vectors: np.ndarray | None = None
) -> ModelBatch:
    """Stack windows into a :class:`ModelBatch`, resampled to 250 Hz, computing RR vectors when not given.

    Parameters
    ----------
    signals_mv : sequence of numpy.ndarray
        Windows of equal shape ``(n_leads, n_samples)`` in millivolts, finite.
    sample_rate_hz : float
        Their sample rate in Hz; other rates than 250 Hz are resampled (polyphase).
    rr_vectors : numpy.ndarray, optional
        ``features.extract(...).rr_vector`` of each window at 250 Hz, shape ``(B, n_features)``; computed
        with :func:`features.extract` when None.

    Returns
    -------
    ModelBatch

    Raises
    ------
    ModelError
        Windows of different shapes, non-finite samples, or a window :func:`features.extract` rejects.
    """
    if sample_rate_hz <= 0:
        raise ModelError(f"sample rate must be positive, got {sample_rate_hz}")
    if len(signals_mv) == 0:
        waves = np.zeros((0, 1, 0), dtype=np.float32)
    else:
        shapes = {np.shape(s) for s in signals_mv}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ModelError(f"windows must share one (n_leads, n_samples) shape, got {sorted(shapes)}")
        waves = _resample(np.stack([np.asarray(s, dtype=np.float32) for s in signals_mv]), sample_rate_hz)
    if not np.all(np.isfinite(waves)):
        raise ModelError("windows hold non-finite samples (gaps): score them as unscorable instead")
    if rr_vectors is None:
        try:
            rows = [features.extract(w, float(SERVING_FS_HZ)).rr_vector for w in waves]
        except FeatureError as exc:
            raise ModelError(f"cannot extract RR features: {exc}") from exc
        rr = np.stack(rows) if rows else np.zeros((0, len(RR_FEATURE_NAMES)), dtype=np.float32)
    else:
        rr = np.asarray(rr_vectors, dtype=np.float32)
    return ModelBatch(np.ascontiguousarray(waves), np.ascontiguousarray(rr, dtype=np.float32))


class ServedModel:
    """A loaded, calibrated model.

    Parameters
    ----------
    module : torch.nn.Module
        The family module with its weights, in eval mode; it has a ``temperature`` buffer and
        ``forward`` returns uncalibrated logits.
    card : ModelCard
        Its model card.
    device : str or torch.device
        Where the module lives; inputs are moved there.

    Attributes
    ----------
    card : ModelCard
    name, version, family : str, int, str
    contract : InputContract
        ``leads``, ``sample_rate_hz``, ``window_s`` and input ``kind``.
    model_id : str
        ``"name@version"``.
    """

    def __init__(self, module: nn.Module, card: ModelCard, device: str | torch.device = "cpu") -> None:
        self.module = module
        self.card = card
        self.name = card.name
        self.version = card.version
        self.family = card.family
        self.contract: InputContract = card.input
        self.device = torch.device(device)
        self.model_id = card.model_id
        self._uses_rr = bool(getattr(module, "uses_rr", False))
        if self.contract.sample_rate_hz != SERVING_FS_HZ:
            raise ModelError(f"{self.model_id} expects {self.contract.sample_rate_hz} Hz; the stream is 250 Hz")

    def __repr__(self) -> str:
        c = self.contract
        return f"ServedModel({self.model_id}, {self.family}, {c.kind}, {c.leads} lead(s), {c.window_s:g} s)"

    @property
    def temperature(self) -> float:
        """Calibration temperature: ``probability = sigmoid(logit / temperature)``."""
        return float(self.module.temperature)  # type: ignore[arg-type]

    def _inputs(self, batch: ModelBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The module's inputs: waveform crop (or RR vectors) and, for hybrid models, the RR vectors."""
        c = self.contract
        rr = np.asarray(batch.rr_vectors)
        needs_rr = c.kind == "rr" or self._uses_rr
        if needs_rr and rr.shape[1] != len(RR_FEATURE_NAMES):
            raise ModelError(f"{self.model_id} needs {len(RR_FEATURE_NAMES)} RR features, got {rr.shape[1]}")
        if needs_rr and not np.all(np.isfinite(rr)):
            raise ModelError(f"non-finite RR vectors for {self.model_id}")
        rr_t = self._to_device(np.ascontiguousarray(rr, dtype=np.float32)) if needs_rr else None
        if c.kind == "rr":
            assert rr_t is not None
            return rr_t, None
        waves = np.asarray(batch.waveforms)
        if waves.shape[1] < c.leads:
            raise ModelError(f"{self.model_id} needs {c.leads} lead(s), the batch has {waves.shape[1]}")
        if waves.shape[2] < c.n_samples:
            raise ModelError(
                f"{self.model_id} needs the last {c.window_s:g} s ({c.n_samples} samples at 250 Hz), "
                f"the batch has {waves.shape[2]}"
            )
        x = np.ascontiguousarray(waves[:, : c.leads, waves.shape[2] - c.n_samples :], dtype=np.float32)
        if not np.all(np.isfinite(x)):
            raise ModelError(f"non-finite samples for {self.model_id}")
        return self._to_device(x), rr_t

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        """One host-to-device copy per batch input; on CUDA from pinned memory, asynchronously."""
        tensor = torch.from_numpy(array)
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)

    def _forward(self, batch: ModelBatch) -> torch.Tensor:
        x, rr = self._inputs(batch)
        with torch.inference_mode():
            return self.module(x) if rr is None else self.module(x, rr)

    def logits(self, batch: ModelBatch) -> np.ndarray:
        """Uncalibrated logits, float32 shape ``(B,)`` (the calibrated probability is ``sigmoid(logit / T)``)."""
        if len(batch) == 0:
            return np.zeros(0, dtype=np.float32)
        return self._forward(batch).float().cpu().numpy()

    def predict(self, batch: ModelBatch) -> np.ndarray:
        """Calibrated AF probabilities of a batch.

        The model reads the first ``contract.leads`` leads and the last ``contract.window_s`` seconds of
        each window (``"waveform"`` models; hybrids also read the RR vectors) or the RR vectors only
        (``"rr"`` models).

        Parameters
        ----------
        batch : ModelBatch

        Returns
        -------
        numpy.ndarray
            float32 probabilities in [0, 1], shape ``(B,)``.

        Raises
        ------
        ModelError
            A batch that violates the contract: too few leads or samples, wrong RR vector length,
            non-finite values.
        """
        if len(batch) == 0:
            return np.zeros(0, dtype=np.float32)
        z = self._forward(batch)
        with torch.inference_mode():
            p = torch.sigmoid(z / self.module.temperature)
        return p.float().cpu().numpy()


def load_served(card_path: Path, device: str | torch.device = "cpu") -> ServedModel:
    """Load one model from its card: SHA-256 check, ``torch.load(weights_only=True)``, never arbitrary pickles.

    Parameters
    ----------
    card_path : pathlib.Path
        The JSON card; weights (and predictions) sit next to it.
    device : str or torch.device
        Inference device.

    Returns
    -------
    ServedModel

    Raises
    ------
    ModelError
        Missing or corrupt files, a checksum mismatch, an unknown family, pickled objects in the weights,
        or RR features other than :data:`features.RR_FEATURE_NAMES`.
    """
    from models.serving import load_module

    module, card = load_module(Path(card_path), device)
    if card.input.kind == "rr" and card.feature_names != RR_FEATURE_NAMES:
        raise ModelError(
            f"{card_path} was trained on features {card.feature_names}, this build computes "
            f"{RR_FEATURE_NAMES}: retrain with holmes train"
        )
    if not isinstance(getattr(module, "temperature", None), torch.Tensor):
        raise ModelError(f"{card_path}: the {card.family} module has no calibration temperature")
    return ServedModel(module, card, device)


def load_zoo(artifact_dir: Path | None = None, device: str | torch.device = "cpu") -> list[ServedModel]:
    """Every model card (``*.json``) of a folder, loaded, sorted by name and version.

    Parameters
    ----------
    artifact_dir : pathlib.Path, optional
        The artifact folder; the packaged ``models/artifacts`` by default.
    device : str or torch.device
        Inference device.

    Returns
    -------
    list of ServedModel

    Raises
    ------
    ModelError
        When the folder holds no card or a card does not load.
    """
    from models.serving import DEFAULT_ARTIFACT_DIR

    folder = Path(artifact_dir) if artifact_dir is not None else DEFAULT_ARTIFACT_DIR
    cards = sorted(folder.glob("*.json"))
    if not cards:
        raise ModelError(f"no model cards in {folder}")
    models = [load_served(path, device) for path in cards]
    return sorted(models, key=lambda m: (m.name, m.version))


def _example_batch(contract: InputContract, batch_size: int, rng: np.random.Generator) -> ModelBatch:
    """ECG-shaped input: 1 mV spikes at 75 bpm on noise (timing does not depend on the content)."""
    n = contract.n_samples
    t = np.arange(n) / SERVING_FS_HZ
    beat = np.exp(-0.5 * ((t % 0.8) - 0.4) ** 2 / 0.01**2).astype(np.float32)
    waves = beat[None, None, :] + 0.05 * rng.standard_normal((batch_size, contract.leads, n)).astype(np.float32)
    rr = np.tile(features.rr_features(np.full(int(contract.window_s / 0.8), 0.8)), (batch_size, 1))
    return ModelBatch(waves.astype(np.float32), rr.astype(np.float32))


def warm_up(model: ServedModel, batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES) -> None:
    """Run ``model`` once at each batch size, so the first real batches do not pay for allocator growth and
    oneDNN primitive creation (tens of ms per new shape)."""
    rng = np.random.default_rng(0)
    for size in batch_sizes:
        model.logits(_example_batch(model.contract, int(size), rng))


def profile_latency(
    model: ServedModel,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    device: str | torch.device = "cpu",
    repeats: int | None = None,
    budget_s: float = 0.3,
    threads: int | None = 1,
) -> dict[int, float]:
    """Median milliseconds per ``predict`` call by batch size, on real-shaped input.

    The call is the whole serving step (numpy -> tensor -> forward -> calibrated numpy); RR vectors are
    an input, their extraction (done once per window by the worker for the quality gate) is not timed.

    Parameters
    ----------
    model : ServedModel
        Loaded model; it is moved to ``device`` for the measurement and moved back afterwards.
    batch_sizes : sequence of int
        Batch sizes to time.
    device : str or torch.device
        Where to time it.
    repeats : int, optional
        Timed calls per batch size; by default as many as fit in ``budget_s`` (at least 3, at most 50).
    budget_s : float
        Time budget per batch size in seconds when ``repeats`` is None.
    threads : int, optional
        Torch intra-op threads during the measurement, restored afterwards. 1 by default: on a small
        machine shared with the broker, the API and the simulator, a second thread mostly waits for a
        core (10-15 ms stalls at small batches), so the worker should serve with one. None leaves the
        process setting alone.

    Returns
    -------
    dict of int to float
        ``{batch_size: median ms per call}``, rounded to 4 significant digits.
    """
    rng = np.random.default_rng(0)
    original = model.device
    target = torch.device(device)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    if target != original:
        model.module.to(target)
        model.device = target
    try:
        out: dict[int, float] = {}
        for size in batch_sizes:
            batch = _example_batch(model.contract, int(size), rng)
            model.predict(batch)  # warm-up: allocator, oneDNN primitives
            first = time.perf_counter()
            model.predict(batch)
            once = time.perf_counter() - first
            n = repeats if repeats is not None else int(min(50, max(3, budget_s / max(once, 1e-6))))
            times = []
            for _ in range(n):
                start = time.perf_counter()
                model.predict(batch)
                times.append(time.perf_counter() - start)
            ms = statistics.median(times) * 1000.0
            out[int(size)] = float(f"{ms:.4g}") if ms > 0 and math.isfinite(ms) else ms
        return out
    finally:
        torch.set_num_threads(previous_threads)
        if target != original:
            model.module.to(original)
            model.device = original
