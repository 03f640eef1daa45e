"""Which models to serve together under a latency budget: the ensemble selector (offline part).

The problem. Among the candidate models (those whose contract the stream satisfies, :func:`candidates`),
find the subset ``S`` that maximises the validation objective (ROC-AUC of the combined score of
:mod:`ensemble.combine`, averaged over the data sets, :class:`ValidationTable`) subject to
``predict_p99_ms(S) <= budget_ms`` (and ``|S| <= max_members``). Ties go to the cheaper subset, then the
smaller, then the first by name. Only the validation split is ever read for selection.

Exact search. :func:`exhaustive_search` visits subsets depth first, members added cheapest first (by
their single-model p99), and leans on monotone latency (adding a member never lowers it) twice: once
``S + c`` is over the budget, ``c`` joins nothing below ``S``; once ``S`` with every candidate that can
still join it fits, its whole subtree fits and nothing there is predicted. The objective is evaluated
incrementally (a subset's score sums are its parent's plus one column), about 40 us per subset on this
shared 2-core machine. :func:`select` searches exactly when the search space (subsets of at most
``max_members`` candidates) holds at most :data:`EXACT_MAX_SUBSETS` = ``2**13`` subsets (13 candidates).
Measured on the 15 candidates of the 10-s two-lead stream (``2**15 - 1`` subsets) with the real
``ensemble.latency.LatencyModel`` (130-240 us per prediction), at 1/64/256 beds and nine budgets: 0.03-
0.8 s where the budget is tight, 1.3 s where everything fits (the objective of all 32,767 subsets alone),
but 4.8-5.6 s where the budget splits the space (64 beds at 250-300 ms, 256 beds at 1 s: 22,000-32,000
latency predictions). That is too long for worker start or a re-plan on two shared cores; beam search
(below) took 0.1-0.5 s on the same nine problems and found the exact optimum in all nine.

Beyond the exact limit: beam search plus local search (:func:`beam_search`). There is no cheap valid
upper bound for branch and bound: the ROC-AUC of a logit average is neither monotone nor submodular in the
member set (a weak member can lower it, two mediocre members with uncorrelated errors can beat the best
single), so a bound would be the trivial 1.0 and the search exhaustive again. What *does* hold for these
ensembles is that good subsets are mostly built from good smaller subsets and accuracy saturates after a
handful of members, so a forward beam search (keep the ``beam_width`` best feasible subsets of each size,
extend each by every feasible candidate, go up to ``max_members``) finds them in
``O(beam_width * n * max_size)`` evaluations instead of ``2**n``. Its greedy commitments are then repaired
by a best-improvement local search (add one, drop one, swap one for one, always within the budget) started
from the beam's best and from the best of the seeded random feasible subsets of :func:`best_of_random`
(multi-start), so the result is never below that random baseline with the same seed. On synthetic zoos of
18 models it lands within 0.005 of the exhaustive optimum (``tests/unit/ensemble/test_selector.py``).

Latency predictions are what a search costs (1-2 ms each with the real model at 1,000 beds, against about
0.13 ms per objective), so the beam and local search predict only what could change their answer: the
children of a beam and the moves of a local step are ranked by objective and checked against the budget
down that ranking until enough fit (latency only breaks ties), and monotone latency answers without a
prediction for a subset of one known to fit or a superset of one known to be over; a bisection over the
candidates cheapest first seeds the first. The choices are those of the eager search (every subset met
predicted; a reference copy in the tests). ``Selection.predicted`` counts the predictions;
``holmes ensemble report`` prints them and the selector's seconds per cell.

Baselines (for ``holmes ensemble report``): :func:`best_single`, :func:`greedy_by_accuracy`,
:func:`greedy_by_latency`, :func:`best_of_random`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from math import comb
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from scipy.special import expit

from ensemble.combine import Combiner, fit_ensemble_temperature, fit_pattern_temperatures, mean_calibrated_logit
from ensemble.errors import EnsembleError

if TYPE_CHECKING:
    from models.zoo import Predictions, ServedModel

__all__ = [
    "BEAM_WIDTH",
    "EXACT_MAX_SUBSETS",
    "RANDOM_SAMPLES",
    "LatencyFn",
    "NoFeasibleEnsemble",
    "Objective",
    "Selection",
    "ValidationTable",
    "beam_search",
    "best_of_random",
    "best_single",
    "candidates",
    "exhaustive_search",
    "greedy_by_accuracy",
    "greedy_by_latency",
    "search_space_size",
    "select",
]

EXACT_MAX_SUBSETS = 2**13
"""Largest search space (number of subsets) searched exhaustively by :func:`select`."""

BEAM_WIDTH = 32
"""Subsets kept per size by :func:`beam_search`."""

RANDOM_SAMPLES = 100
"""Random feasible subsets drawn by :func:`best_of_random`."""

Objective = Callable[[tuple[str, ...]], float]
"""Validation objective of a subset of model ids (higher is better)."""

LatencyFn = Callable[[tuple[str, ...]], float]
"""Predicted end-to-end p99 latency (ms) of a subset of model ids; monotone in the subset."""


_TIE_DECIMALS = 12  # objectives equal to 12 decimals are a tie (then the cheaper subset wins)
_SUBTREE_CHECK = 4  # the exact search checks whether a whole subtree fits when >= 4 candidates can still join


class NoFeasibleEnsemble(EnsembleError):
    """Not even the cheapest single candidate meets the latency budget."""


# -- candidates ------------------------------------------------------------------------------------


def candidates(models: Sequence[ServedModel], window_s: float, leads: int) -> list[ServedModel]:
    """The models a stream of ``window_s``-second, ``leads``-lead windows can serve.

    A model qualifies when its window is no longer than the stream's (a shorter model reads the last part
    of the window) and it needs no more leads than the stream has. Two-lead models qualify for two-lead
    streams; at serving, windows a member cannot read (a bed that lost a lead) are just not present for it.
    """
    if window_s <= 0 or leads < 1:
        raise EnsembleError(f"window_s must be positive and leads >= 1, got {window_s}, {leads}")
    return [m for m in models if m.contract.window_s <= window_s + 1e-9 and m.contract.leads <= leads]


# -- the validation table --------------------------------------------------------------------------


class ValidationTable:
    """Every candidate's predictions on the same windows, and the objective of any subset of them.

    Rows are windows (``(dataset, record, end)``), columns are models. The objective of a subset is the
    ROC-AUC of its combined score (mean calibrated logit of the members present, :mod:`ensemble.combine`;
    a window no member scored counts as p = 0.5), computed per data set and averaged over the data sets
    (as :func:`models.zoo.select.best_single` does). ROC-AUC does not depend on the ensemble temperature,
    so none is fitted for it. Values are cached per subset (``frozenset``); a subset whose parent (one
    member fewer) was the last subset of its size evaluated is scored from the parent's sums.

    Parameters
    ----------
    members : sequence of str
        Model ids, one per column.
    logits : numpy.ndarray
        Uncalibrated logits, shape ``(n, M)``; NaN where a model has no prediction (unless ``present``).
    labels : numpy.ndarray
        0/1 AF labels, shape ``(n,)``.
    datasets : numpy.ndarray
        Data set of each window (``"cinc"``, ``"mitdb"``), shape ``(n,)``.
    present : numpy.ndarray, optional
        bool ``(n, M)``; by default the finite entries of ``logits``.
    temperatures : sequence of float, optional
        Each model's calibration temperature (``probability = sigmoid(logit / T)``); 1 by default.
    split : str
        Which split the rows come from (``"val"`` for selection), for the record.

    Raises
    ------
    EnsembleError
        Shapes that do not match, or no data set with both classes.
    """

    def __init__(
        self,
        members: Sequence[str],
        logits: np.ndarray,
        labels: np.ndarray,
        datasets: np.ndarray,
        *,
        present: np.ndarray | None = None,
        temperatures: Sequence[float] | None = None,
        split: str = "val",
    ) -> None:
        self.members: tuple[str, ...] = tuple(members)
        x = np.asarray(logits, dtype=np.float64)
        n = x.shape[0] if x.ndim == 2 else -1
        if x.ndim != 2 or x.shape[1] != len(self.members):
            raise EnsembleError(f"logits must have shape (windows, {len(self.members)}), got {x.shape}")
        if len(set(self.members)) != len(self.members):
            raise EnsembleError(f"duplicate model ids in {self.members}")
        self.labels = np.asarray(labels).astype(np.int8)
        self.datasets = np.asarray(datasets).astype(str)
        if self.labels.shape != (n,) or self.datasets.shape != (n,):
            raise EnsembleError(f"{n} windows but labels {self.labels.shape} and datasets {self.datasets.shape}")
        if not np.isin(self.labels, (0, 1)).all():
            raise EnsembleError("labels must be 0 or 1")
        mask = np.isfinite(x) if present is None else np.asarray(present, dtype=bool)
        if mask.shape != x.shape or np.any(mask & ~np.isfinite(x)):
            raise EnsembleError("present must match the logits' shape and mark only finite logits")
        temps = np.ones(len(self.members)) if temperatures is None else np.asarray(temperatures, dtype=np.float64)
        if temps.shape != (len(self.members),) or not np.all(np.isfinite(temps) & (temps > 0)):
            raise EnsembleError(f"need one finite positive temperature per model, got {temperatures}")
        self.temperatures: tuple[float, ...] = tuple(float(t) for t in temps)
        self.split = split
        self.present = mask
        self.calibrated = np.where(mask, x / temps, 0.0)
        self._index = {m: j for j, m in enumerate(self.members)}

        # Column-major copies, windows grouped by data set, positives first: a subset's sums are row sums.
        self.scored_datasets: tuple[str, ...] = tuple(
            d for d in sorted(set(self.datasets.tolist())) if 0 < self.labels[self.datasets == d].sum() < (
                self.datasets == d).sum()
        )
        if not self.scored_datasets:
            raise EnsembleError(f"no data set of the {split} windows has both AF and non-AF windows")
        order: list[np.ndarray] = []
        self._segments: list[tuple[int, int, int]] = []  # (start, n_pos, n) per scored data set
        start = 0
        for d in self.scored_datasets:
            rows = np.flatnonzero(self.datasets == d)
            pos, neg = rows[self.labels[rows] == 1], rows[self.labels[rows] == 0]
            order += [pos, neg]
            self._segments.append((start, pos.size, rows.size))
            start += rows.size
        rows = np.concatenate(order)
        self._z = np.ascontiguousarray(self.calibrated[rows].T)
        self._p = np.ascontiguousarray(self.present[rows].T.astype(np.float64))
        # All data sets in one sort: each segment is shifted above the previous one's range, so the sorted
        # negatives stay grouped by data set and one searchsorted serves them all.
        span = 2.0 * float(np.abs(self.calibrated).max()) + 1.0
        shift = np.concatenate([np.full(n, k * span) for k, (_, _, n) in enumerate(self._segments)])
        is_pos = np.concatenate([np.arange(n) < n_pos for _, n_pos, n in self._segments])
        self._pos_rows, self._neg_rows = np.flatnonzero(is_pos), np.flatnonzero(~is_pos)
        self._pos_shift, self._neg_shift = shift[self._pos_rows], shift[self._neg_rows]
        n_pos = np.array([n_pos for _, n_pos, _ in self._segments])
        n_neg = np.array([n - n_pos for _, n_pos, n in self._segments])
        self._pos_starts = np.concatenate([[0], np.cumsum(n_pos)[:-1]])
        self._neg_before = np.repeat(np.concatenate([[0], np.cumsum(n_neg)[:-1]]), n_pos)
        self._pairs = (n_pos * n_neg).astype(np.float64)
        self._cache: dict[frozenset[str], float] = {}
        self._last: dict[int, tuple[frozenset[int], np.ndarray, np.ndarray]] = {}
        self.evaluations = 0

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_predictions(
        cls,
        predictions: Mapping[str, Predictions],
        temperatures: Mapping[str, float],
        *,
        split: str = "val",
        window_s: float | None = None,
    ) -> ValidationTable:
        """Join per-model predictions (:mod:`models.zoo.records`) on ``(dataset, record, end)``.

        Parameters
        ----------
        predictions : mapping of str to Predictions
            Model id to its predictions file; only the rows of ``split`` are read.
        temperatures : mapping of str to float
            Model id to its calibration temperature.
        split : {"val", "test"}
            ``"val"`` for selection; ``"test"`` only to report held-out figures of chosen subsets.
        window_s : float, optional
            The stream's window length: the rows are the windows some model of exactly this length scored
            (the windows such a stream produces); all windows any model scored when None or when no model
            has this length. A shorter member only counts where its own window ends at the same sample
            (at serving it would read the last part of every window), so in a 30-s table the 10-s members
            miss the CinC windows that end off their 10-s grid.

        Returns
        -------
        ValidationTable

        Raises
        ------
        EnsembleError
            No predictions, a window scored twice by one model, or two models disagreeing on a label.
        """
        if not predictions:
            raise EnsembleError("no predictions to join")
        ids = list(predictions)
        missing = [m for m in ids if m not in temperatures]
        if missing:
            raise EnsembleError(f"no temperature for {missing}")
        parts = []
        for j, model_id in enumerate(ids):
            p = predictions[model_id]
            rows = np.flatnonzero(p.split == split)
            length_s = (p.end[rows] - p.start[rows]) / 250.0
            parts.append((j, rows, p, length_s))
        keys = np.rec.fromarrays(
            [
                np.concatenate([p.dataset[r].astype(str) for _, r, p, _ in parts]),
                np.concatenate([p.record[r].astype(str) for _, r, p, _ in parts]),
                np.concatenate([p.end[r].astype(np.int64) for _, r, p, _ in parts]),
            ],
            names="dataset,record,end",
        )
        if keys.size == 0:
            raise EnsembleError(f"no {split} rows in the predictions of {ids}")
        unique, inverse = np.unique(keys, return_inverse=True)
        inverse = inverse.ravel()
        n = unique.size
        logits = np.full((n, len(ids)), np.nan)
        labels = np.full(n, -1, dtype=np.int8)
        keep = np.zeros(n, dtype=bool)
        offset = 0
        for j, rows, p, length_s in parts:
            at = inverse[offset : offset + rows.size]
            offset += rows.size
            if np.unique(at).size != at.size:
                raise EnsembleError(f"{ids[j]} scores a ({split}) window twice")
            label = p.label[rows].astype(np.int8)
            clash = (labels[at] >= 0) & (labels[at] != label)
            if clash.any():
                k = at[np.flatnonzero(clash)[0]]
                raise EnsembleError(f"{ids[j]} disagrees with another model on the label of window {unique[k]}")
            labels[at] = label
            logits[at, j] = p.logit[rows]
            if window_s is not None:
                keep[at[np.abs(length_s - window_s) < 1e-6]] = True
        if window_s is None or not keep.any():
            keep[:] = True
        return cls(
            ids,
            logits[keep],
            labels[keep],
            unique["dataset"][keep],
            temperatures=[float(temperatures[m]) for m in ids],
            split=split,
        )

    @classmethod
    def from_models(
        cls,
        models: Sequence[ServedModel],
        *,
        artifact_dir: Path | None = None,
        split: str = "val",
        window_s: float | None = None,
    ) -> ValidationTable:
        """The table of served models, from the predictions files next to their cards.

        Parameters
        ----------
        models : sequence of ServedModel
            E.g. ``candidates(load_zoo(), 10.0, 2)``.
        artifact_dir : pathlib.Path, optional
            Folder of the cards and predictions files (the one ``load_zoo`` read); the packaged one by
            default.
        split, window_s
            As for :meth:`from_predictions`.
        """
        from models.errors import ModelError
        from models.serving import DEFAULT_ARTIFACT_DIR
        from models.zoo import read_predictions

        folder = Path(artifact_dir) if artifact_dir is not None else DEFAULT_ARTIFACT_DIR
        predictions: dict[str, Predictions] = {}
        temperatures: dict[str, float] = {}
        for model in models:
            name = model.card.predictions_file
            if not name:
                raise EnsembleError(f"{model.model_id} has no predictions file: it cannot be selected")
            try:
                predictions[model.model_id] = read_predictions(folder / name, model.card.predictions_sha256)
            except ModelError as exc:
                raise EnsembleError(f"{model.model_id}: {exc}") from exc
            temperatures[model.model_id] = model.temperature
        return cls.from_predictions(predictions, temperatures, split=split, window_s=window_s)

    # -- the objective -----------------------------------------------------------------------------

    def _columns(self, members: Iterable[str]) -> frozenset[int]:
        try:
            cols = frozenset(self._index[m] for m in members)
        except KeyError as exc:
            raise EnsembleError(f"{exc.args[0]} is not in the table ({len(self.members)} models)") from None
        if not cols:
            raise EnsembleError("an ensemble needs at least one member")
        return cols

    def _sums(self, cols: frozenset[int]) -> tuple[np.ndarray, np.ndarray]:
        k = len(cols)
        parent = self._last.get(k - 1)
        if parent is not None and parent[0] < cols:
            (j,) = cols - parent[0]
            num, cnt = parent[1] + self._z[j], parent[2] + self._p[j]
        else:
            idx = sorted(cols)
            num, cnt = self._z[idx].sum(axis=0), self._p[idx].sum(axis=0)
        self._last[k] = (cols, num, cnt)
        return num, cnt

    def objective(self, members: Iterable[str]) -> float:
        """Validation ROC-AUC of the subset's combined score, averaged over the data sets (cached)."""
        key = frozenset(members)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        num, cnt = self._sums(self._columns(key))
        score = num / np.maximum(cnt, 1.0)
        neg = np.sort(score[self._neg_rows] + self._neg_shift)
        pos = score[self._pos_rows] + self._pos_shift
        # per positive: negatives of its data set below it, plus half of those equal to it
        below = np.searchsorted(neg, pos, side="left")
        tied = neg[np.minimum(below, neg.size - 1)] == pos
        below = below - self._neg_before + 0.0
        if tied.any():  # rare but for windows no member scored (all exactly 0)
            below[tied] += 0.5 * (np.searchsorted(neg, pos[tied], side="right") - below[tied] - self._neg_before[tied])
        aucs = np.add.reduceat(below, self._pos_starts) / self._pairs
        value = float(aucs.sum() / aucs.size)
        self._cache[key] = value
        self.evaluations += 1
        return value

    __call__ = objective

    def clear_cache(self) -> None:
        """Forget cached objective values (to time a search from cold)."""
        self._cache.clear()
        self._last.clear()
        self.evaluations = 0

    # -- combined scores ---------------------------------------------------------------------------

    def combined_logits(self, members: Iterable[str]) -> np.ndarray:
        """Mean calibrated logit of the members present, per window (row order of the table)."""
        cols = sorted(self._columns(members))
        return mean_calibrated_logit(self.calibrated[:, cols], self.present[:, cols])

    def combiner(self, members: Sequence[str]) -> Combiner:
        """The serving :class:`~ensemble.combine.Combiner` of ``members``, its temperature fitted on these rows.

        Fit it on the validation table: the ensemble temperature is part of the model, not of the test.
        """
        members = tuple(members)
        z = self.combined_logits(members)
        temps = tuple(self.temperatures[self._index[m]] for m in members)
        present = self.present[:, [self._index[m] for m in members]]
        return Combiner(members, temps, fit_ensemble_temperature(z, self.labels),
                        fit_pattern_temperatures(z, self.labels, present))

    def probabilities(self, members: Sequence[str], combiner: Combiner | None = None) -> np.ndarray:
        """Combined probabilities per window with ``combiner``'s temperature (fitted here when None)."""
        combiner = combiner if combiner is not None else self.combiner(members)
        if set(combiner.members) != set(members):
            raise EnsembleError(f"the combiner is for {combiner.members}, not {tuple(members)}")
        z = self.combined_logits(members)
        present = self.present[:, [self._index[m] for m in combiner.members]]
        return np.asarray(expit(z / combiner.row_temperatures(present)), dtype=np.float64)

    def metrics(self, members: Sequence[str], combiner: Combiner | None = None) -> dict[str, dict[str, Any]]:
        """Per data set: ``n``, ``n_pos``, ``roc_auc``, ``pr_auc``, ``ece``, ... of the combined probabilities
        (:func:`models.evaluation.probability_metrics`), and ``coverage`` (fraction of windows scored)."""
        from models.evaluation import probability_metrics

        p = self.probabilities(members, combiner)
        cols = sorted(self._columns(members))
        scored = self.present[:, cols].any(axis=1)
        out: dict[str, dict[str, Any]] = {}
        for d in sorted(set(self.datasets.tolist())):
            m = self.datasets == d
            out[d] = {**probability_metrics(p[m], self.labels[m]), "coverage": float(scored[m].mean())}
        return out


# -- search ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selection:
    """A chosen ensemble.

    Attributes
    ----------
    members : tuple of str
        Model ids, in the order the candidates were given.
    objective : float
        Its validation objective.
    predicted_p99_ms : float
        Its predicted end-to-end p99 latency.
    method : str
        How it was found (``"exhaustive"``, ``"beam"``, or a baseline's name).
    evaluated : int
        Subsets whose objective the search computed.
    predicted : int
        Subsets whose latency the search predicted.
    """

    members: tuple[str, ...]
    objective: float
    predicted_p99_ms: float
    method: str
    evaluated: int
    predicted: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "members": list(self.members),
            "objective": self.objective,
            "predicted_p99_ms": self.predicted_p99_ms,
            "method": self.method,
            "evaluated": self.evaluated,
            "predicted": self.predicted,
        }


Subset = tuple[int, ...]  # sorted candidate indices


class _Problem:
    """Candidates, cached objective and latency, the budget and the running best of one search."""

    def __init__(
        self,
        candidate_ids: Sequence[str],
        objective: Objective,
        predict_p99_ms: LatencyFn,
        budget_ms: float,
        max_members: int | None,
    ) -> None:
        self.ids = tuple(candidate_ids)
        if not self.ids:
            raise EnsembleError("no candidate models")
        if len(set(self.ids)) != len(self.ids):
            raise EnsembleError(f"duplicate candidates in {self.ids}")
        if math.isnan(budget_ms):
            raise EnsembleError("the latency budget is NaN")
        if max_members is not None and max_members < 1:
            raise EnsembleError(f"max_members must be >= 1, got {max_members}")
        self.n = len(self.ids)
        self.max_size = self.n if max_members is None else min(max_members, self.n)
        self.budget_ms = float(budget_ms)
        self._objective = objective
        self._latency = predict_p99_ms
        self._obj: dict[Subset, float] = {}
        self._lat: dict[Subset, float] = {}
        self._key: dict[Subset, tuple[float, float, int, tuple[str, ...]]] = {}
        self._fit: list[int] = []  # maximal member bitmasks known to fit
        self._over: list[int] = []  # minimal member bitmasks known to be over the budget
        self.best: Subset | None = None

    def members(self, s: Subset) -> tuple[str, ...]:
        return tuple(self.ids[i] for i in s)

    def latency(self, s: Subset) -> float:
        value = self._lat.get(s)
        if value is None:
            value = float(self._latency(self.members(s)))
            if math.isnan(value):
                raise EnsembleError(f"predicted p99 of {self.members(s)} is NaN")
            self._lat[s] = value
        return value

    def fits(self, s: Subset) -> bool:
        """Within the latency budget (whatever its size).

        Monotone latency answers without a prediction where it can: a subset of one known to fit fits, a
        superset of one known to be over is over.
        """
        value = self._lat.get(s)
        if value is not None:
            return value <= self.budget_ms
        if self.known_fit(s):
            return True
        if self.known_over(s):
            return False
        mask = _mask(s)
        ok = self.latency(s) <= self.budget_ms
        if ok:
            self._fit = [known for known in self._fit if known & ~mask] + [mask]
        else:
            self._over = [known for known in self._over if mask & ~known] + [mask]
        return ok

    def feasible(self, s: Subset) -> bool:
        return 0 < len(s) <= self.max_size and self.fits(s)

    def objective(self, s: Subset) -> float:
        value = self._obj.get(s)
        if value is None:
            value = float(self._objective(self.members(s)))
            if math.isnan(value):
                raise EnsembleError(f"objective of {self.members(s)} is NaN")
            self._obj[s] = value
        return value

    def key(self, s: Subset) -> tuple[float, float, int, tuple[str, ...]]:
        """Sort key: higher objective, then lower p99, then fewer members, then names."""
        key = self._key.get(s)
        if key is None:
            key = (-round(self.objective(s), _TIE_DECIMALS), self.latency(s), len(s), self.members(s))
            self._key[s] = key
        return key

    def consider(self, s: Subset) -> None:
        """Evaluate a feasible subset and keep it if it is the best so far.

        Latency is only looked at on a tie (the exact search may know ``s`` fits without predicting it).
        """
        if self.best is None:
            self.best = s
            return
        new, old = round(self.objective(s), _TIE_DECIMALS), round(self.objective(self.best), _TIE_DECIMALS)
        if new > old or (new == old and self.key(s) < self.key(self.best)):
            self.best = s

    def known_fit(self, s: Subset) -> bool:
        """Inside a subset already predicted within the budget (so it fits too), no prediction made."""
        mask = _mask(s)
        return any(mask & ~known == 0 for known in self._fit)

    def known_over(self, s: Subset) -> bool:
        """Holds a subset already predicted over the budget (so it is over too), no prediction made."""
        mask = _mask(s)
        return any(known & ~mask == 0 for known in self._over)

    def seed_fits(self) -> None:
        """Find the most candidates, cheapest first, that fit together (a bisection, a few predictions): every
        subset of them then fits without a prediction of its own."""
        everyone = tuple(range(self.n))
        if self.fits(everyone):
            return
        order = sorted(everyone, key=lambda i: (self.latency((i,)), i))
        lo, hi = 0, self.n  # the cheapest lo fit together, the cheapest hi do not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.fits(tuple(sorted(order[:mid]))):
                lo = mid
            else:
                hi = mid

    def rounded(self, s: Subset) -> float:
        return round(self.objective(s), _TIE_DECIMALS)

    def by_objective(self, subsets: Iterable[Subset]) -> Iterator[list[Subset]]:
        """``subsets`` (each once) in groups of equal rounded objective, best group first; those too large or
        known to be over the budget are left out unevaluated."""
        open_ = [s for s in set(subsets) if len(s) <= self.max_size and not self.known_over(s)]
        ranked = sorted(open_, key=lambda s: (-self.rounded(s), s))
        for _, group in itertools.groupby(ranked, key=self.rounded):
            yield list(group)

    def ranked(self, subsets: Iterable[Subset]) -> list[Subset]:
        """``subsets`` sorted by :meth:`key`, latency predicted only to order subsets of equal objective."""
        out: list[Subset] = []
        for group in self.by_objective(subsets):
            out += sorted(group, key=self.key) if len(group) > 1 else group
        return out

    def best_feasible(self, subsets: Iterable[Subset], incumbent: Subset | None = None) -> Subset | None:
        """The least :meth:`key` among the feasible ``subsets`` and ``incumbent`` (None if there is none).

        Goes down the objective ranking and stops at the first group that holds a feasible subset, so only
        subsets that could win are checked against the budget, and latency only breaks ties.
        """
        floor = None if incumbent is None else self.rounded(incumbent)
        for group in self.by_objective(subsets):
            if floor is not None and self.rounded(group[0]) < floor:
                break
            feasible = [s for s in group if self.feasible(s)]
            if feasible:
                return min([*feasible, *([incumbent] if incumbent is not None else [])], key=self.key)
        return incumbent

    def feasible_singles(self) -> list[Subset]:
        singles = [(i,) for i in range(self.n) if self.feasible((i,))]
        if not singles:
            cheapest = min(range(self.n), key=lambda i: self.latency((i,)))
            raise NoFeasibleEnsemble(
                f"no candidate meets the {self.budget_ms:g} ms p99 budget (cheapest: {self.ids[cheapest]} at "
                f"{self.latency((cheapest,)):.1f} ms)"
            )
        return singles

    def result(self, method: str) -> Selection:
        assert self.best is not None
        s = self.best
        p99 = self.latency(s)
        return Selection(self.members(s), self.objective(s), p99, method, len(self._obj), len(self._lat))


def _add(s: Subset, i: int) -> Subset:
    return tuple(sorted((*s, i)))


def _mask(s: Subset) -> int:
    return sum(1 << i for i in s)


def search_space_size(n_candidates: int, max_members: int | None = None) -> int:
    """Number of non-empty subsets of at most ``max_members`` of ``n_candidates`` candidates."""
    k = n_candidates if max_members is None else min(max_members, n_candidates)
    return sum(comb(n_candidates, j) for j in range(1, k + 1))


def _exhaustive(problem: _Problem) -> None:
    problem.feasible_singles()
    # Cheapest first, so the search path over-runs the budget as early as possible.
    order = sorted(range(problem.n), key=lambda i: (problem.latency((i,)), i))
    # A node is a feasible prefix and the candidates that can still join it. Monotone latency twice over:
    # when prefix + c is over the budget, c joins nothing below the prefix; when the prefix with every
    # candidate left fits, so does everything below it, and nothing there needs predicting.
    stack: list[tuple[Subset, tuple[int, ...], bool]] = [((), tuple(order), False)]
    while stack:
        prefix, viable, all_fit = stack.pop()
        if not all_fit and len(viable) >= _SUBTREE_CHECK:
            all_fit = problem.fits(tuple(sorted((*prefix, *viable))))
        fitting = []
        for i in viable:
            s = _add(prefix, i)
            if all_fit or problem.fits(s):
                problem.consider(s)
                fitting.append(i)
        if len(prefix) + 1 < problem.max_size:
            stack.extend((_add(prefix, i), tuple(fitting[k + 1 :]), all_fit) for k, i in reversed(list(
                enumerate(fitting))) if k + 1 < len(fitting))


def exhaustive_search(
    candidate_ids: Sequence[str],
    objective: Objective,
    predict_p99_ms: LatencyFn,
    budget_ms: float,
    *,
    max_members: int | None = None,
) -> Selection:
    """The best feasible subset, by visiting every subset that fits (see the module docstring).

    Parameters
    ----------
    candidate_ids : sequence of str
        Candidate model ids.
    objective : callable
        ``objective(members) -> float``, higher is better (e.g. :meth:`ValidationTable.objective`).
    predict_p99_ms : callable
        ``predict_p99_ms(members) -> float``; must never decrease when a member is added.
    budget_ms : float
        p99 budget in ms.
    max_members : int, optional
        Largest ensemble.

    Returns
    -------
    Selection

    Raises
    ------
    NoFeasibleEnsemble
        When no single candidate meets the budget.
    """
    problem = _Problem(candidate_ids, objective, predict_p99_ms, budget_ms, max_members)
    _exhaustive(problem)
    return problem.result("exhaustive")


def _random_subsets(problem: _Problem, samples: int, seed: int) -> list[Subset]:
    """Seeded random feasible subsets: a random size, members in random order, skipping any that breaks
    the budget."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(samples):
        target = int(rng.integers(1, problem.max_size + 1))
        s: Subset = ()
        for i in rng.permutation(problem.n):
            t = _add(s, int(i))
            if problem.feasible(t):
                s = t
                if len(s) == target:
                    break
        if s:
            out.append(s)
    return out


def _local_search(problem: _Problem, start: Subset) -> Subset:
    """Best-improvement hill climbing over add-one, drop-one and swap-one moves within the budget."""
    current = start
    while True:
        inside = set(current)
        outside = [i for i in range(problem.n) if i not in inside]
        moves: list[Subset] = [_add(current, i) for i in outside]
        if len(current) > 1:
            moves += [tuple(j for j in current if j != i) for i in current]
        moves += [_add(tuple(j for j in current if j != i), o) for i in current for o in outside]
        best = problem.best_feasible(moves, current)
        assert best is not None
        if best == current:
            return current
        problem.consider(best)
        current = best


def beam_search(
    candidate_ids: Sequence[str],
    objective: Objective,
    predict_p99_ms: LatencyFn,
    budget_ms: float,
    *,
    max_members: int | None = None,
    beam_width: int = BEAM_WIDTH,
    seed: int = 0,
) -> Selection:
    """Forward beam search, then multi-start local search (see the module docstring).

    Parameters are those of :func:`exhaustive_search`, plus ``beam_width`` (subsets kept per size) and
    ``seed`` (of the random starts, as in :func:`best_of_random`).
    """
    if beam_width < 1:
        raise EnsembleError(f"beam_width must be >= 1, got {beam_width}")
    problem = _Problem(candidate_ids, objective, predict_p99_ms, budget_ms, max_members)
    problem.seed_fits()
    beam = problem.ranked(problem.feasible_singles())[:beam_width]
    for s in beam:
        problem.consider(s)
    seen: set[Subset] = set(beam)
    while beam and len(beam[0]) < problem.max_size:
        children = []
        for s in beam:
            for i in range(problem.n):
                t = _add(s, i)
                if i not in s and t not in seen:
                    seen.add(t)
                    children.append(t)
        # The beam_width best feasible children: down the objective ranking until that many fit (a group of
        # equal objective is taken whole, the ties go by key), so a child ranked below them is never predicted.
        fitting: list[Subset] = []
        for group in problem.by_objective(children):
            if len(fitting) >= beam_width:
                break
            fitting += [t for t in group if problem.feasible(t)]
        beam = problem.ranked(fitting)[:beam_width]
        if beam:
            problem.consider(beam[0])
    assert problem.best is not None
    starts = [problem.best]
    randoms = _random_subsets(problem, RANDOM_SAMPLES, seed)
    if randoms:
        starts.append(problem.ranked(randoms)[0])
    for s in starts:
        problem.consider(s)
        _local_search(problem, s)
    return problem.result("beam")


def best_single(
    candidate_ids: Sequence[str], objective: Objective, predict_p99_ms: LatencyFn, budget_ms: float
) -> Selection:
    """Baseline: the best single candidate that fits (the ensemble-free rule of ``models.zoo.select``)."""
    problem = _Problem(candidate_ids, objective, predict_p99_ms, budget_ms, 1)
    for s in problem.feasible_singles():
        problem.consider(s)
    return problem.result("best-single")


def _greedy(problem: _Problem, order: list[Subset], method: str) -> Selection:
    current = order[0]
    problem.consider(current)
    for (i,) in order[1:]:
        if len(current) >= problem.max_size:
            break
        t = _add(current, i)
        if problem.feasible(t) and round(problem.objective(t), _TIE_DECIMALS) > round(
            problem.objective(current), _TIE_DECIMALS
        ):
            current = t
            problem.consider(current)
    return problem.result(method)


def greedy_by_accuracy(
    candidate_ids: Sequence[str],
    objective: Objective,
    predict_p99_ms: LatencyFn,
    budget_ms: float,
    *,
    max_members: int | None = None,
) -> Selection:
    """Baseline: start from the best single model, then go down the single-model ranking and add each model
    that keeps the ensemble within the budget and raises the objective (the others are skipped)."""
    problem = _Problem(candidate_ids, objective, predict_p99_ms, budget_ms, max_members)
    return _greedy(problem, sorted(problem.feasible_singles(), key=problem.key), "greedy-accuracy")


def greedy_by_latency(
    candidate_ids: Sequence[str],
    objective: Objective,
    predict_p99_ms: LatencyFn,
    budget_ms: float,
    *,
    max_members: int | None = None,
) -> Selection:
    """Baseline: start from the cheapest model, then add models cheapest first whenever the ensemble stays
    within the budget and the objective rises."""
    problem = _Problem(candidate_ids, objective, predict_p99_ms, budget_ms, max_members)
    singles = problem.feasible_singles()
    order = sorted(singles, key=lambda s: (problem.latency(s), -problem.objective(s), s))
    return _greedy(problem, order, "greedy-latency")


def best_of_random(
    candidate_ids: Sequence[str],
    objective: Objective,
    predict_p99_ms: LatencyFn,
    budget_ms: float,
    *,
    max_members: int | None = None,
    samples: int = RANDOM_SAMPLES,
    seed: int = 0,
) -> Selection:
    """Baseline: the best of ``samples`` seeded random feasible subsets (random size up to ``max_members``,
    members drawn in random order, any that would break the budget skipped)."""
    problem = _Problem(candidate_ids, objective, predict_p99_ms, budget_ms, max_members)
    problem.feasible_singles()
    for s in _random_subsets(problem, samples, seed):
        problem.consider(s)
    return problem.result("random")


def select(
    candidate_ids: Sequence[str],
    objective: Objective,
    predict_p99_ms: LatencyFn,
    budget_ms: float,
    *,
    max_members: int | None = None,
    method: Literal["auto", "exhaustive", "beam"] = "auto",
    exact_max_subsets: int = EXACT_MAX_SUBSETS,
    beam_width: int = BEAM_WIDTH,
    seed: int = 0,
) -> Selection:
    """The ensemble to serve: the best validation objective whose predicted p99 meets the budget.

    Parameters
    ----------
    candidate_ids : sequence of str
        Model ids the stream can serve (:func:`candidates`).
    objective : callable
        ``objective(members) -> float`` (:meth:`ValidationTable.objective` on the validation table).
    predict_p99_ms : callable
        ``predict_p99_ms(members) -> float``, monotone in the member set (e.g. built on
        ``ensemble.latency.LatencyModel.predict(members, load).p99_ms``).
    budget_ms : float
        p99 end-to-end budget in ms.
    max_members : int, optional
        Largest ensemble.
    method : {"auto", "exhaustive", "beam"}
        ``"auto"``: exhaustive when the search space has at most ``exact_max_subsets`` subsets
        (:func:`search_space_size`), else beam search.
    exact_max_subsets : int
        The exact-search limit for ``"auto"``.
    beam_width, seed
        For :func:`beam_search`.

    Returns
    -------
    Selection

    Raises
    ------
    NoFeasibleEnsemble
        When no single candidate meets the budget.
    EnsembleError
        Invalid arguments.
    """
    if method == "auto":
        size = search_space_size(len(candidate_ids), max_members)
        method = "exhaustive" if size <= exact_max_subsets else "beam"
    if method == "exhaustive":
        return exhaustive_search(candidate_ids, objective, predict_p99_ms, budget_ms, max_members=max_members)
    if method == "beam":
        return beam_search(
            candidate_ids, objective, predict_p99_ms, budget_ms, max_members=max_members, beam_width=beam_width,
            seed=seed,
        )
    raise EnsembleError(f"unknown selection method {method!r}")

