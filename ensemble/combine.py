"""The ensemble's combined score: the mean of the members' calibrated logits, recalibrated by one temperature.

For a window, with the members that have a score for it (``present``),

    z = mean over present members m of (logit_m / T_m)        (T_m: the member's own temperature)
    p = sigmoid(z / T_ens)                                      (T_ens: fitted on the validation windows)

and ``p = 0.5`` where no member has a score. Averaging logits (not probabilities) keeps a confident member
confident and is what the member temperatures were fitted for; averaging correlated members shrinks or
stretches the spread of ``z``, which the single ensemble temperature ``T_ens`` (minimum validation NLL)
puts right. ROC-AUC is unchanged by ``T_ens``, so the selector ranks subsets without fitting it.

The combiner takes the members' *uncalibrated* logits (``ServedModel.logits``): a calibrated probability
saturates to exactly 0 or 1 in float32 for a logit beyond about +-17 and cannot be turned back into a
logit, while ``logit / T_m`` is exact. :meth:`Combiner.combine_probabilities` is there for callers that
only have calibrated probabilities (clipped to ``[1e-7, 1 - 1e-7]`` first).

One temperature cannot fit every coverage pattern at once: on CinC windows only the one-lead members
score, on MIT-BIH windows all of them, and the spread of the mean differs. So a coverage pattern with
enough validation windows gets its own temperature (``pattern_temperatures``). On the 10-s zoo every pick
of the selector comes out with a validation ECE under 0.03, and every pick of three or more members at or
below its members' mean ECE; two cheap pairs do not (0.015 and 0.021 against 0.012 and 0.014:
``tests/unit/ensemble/test_combine.py``).

Partial scores: members that did not finish in time are simply not present (a ``present`` mask, NaN
logits, or a column left out of :meth:`Combiner.combine_members`); the score is the same formula over
the members that did, and :class:`Combined` says it is partial.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_expit

from ensemble.errors import EnsembleError

__all__ = [
    "Combined",
    "Combiner",
    "fit_ensemble_temperature",
    "fit_pattern_temperatures",
    "mean_calibrated_logit",
]

TEMPERATURE_BOUNDS = (0.05, 20.0)
"""Search interval of the ensemble temperature (as for the member temperatures, ``models.evaluation``)."""

_P_CLIP = 1e-7


def mean_calibrated_logit(calibrated_logits: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Row means of ``calibrated_logits`` over the ``present`` entries; 0 (p = 0.5) where none is present.

    Parameters
    ----------
    calibrated_logits : numpy.ndarray
        Shape ``(B, M)``; entries that are not present may hold anything (NaN included).
    present : numpy.ndarray
        bool, shape ``(B, M)``.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(B,)``.
    """
    z = np.where(present, calibrated_logits, 0.0)
    count = present.sum(axis=1)
    return np.asarray(z.sum(axis=1, dtype=np.float64) / np.maximum(count, 1), dtype=np.float64)


def _nll(z: np.ndarray, y: np.ndarray, temperature: float) -> float:
    s = z / temperature
    return float(-np.mean(y * log_expit(s) + (1.0 - y) * log_expit(-s)))


#: A coverage pattern gets its own temperature when its validation windows hold at least this many
#: windows and this many positives; below that the shared temperature is the better estimate.
PATTERN_MIN_WINDOWS = 200
PATTERN_MIN_POSITIVES = 20


def fit_pattern_temperatures(
    z: np.ndarray, labels: np.ndarray, present: np.ndarray
) -> tuple[tuple[str, float], ...]:
    """Temperatures per coverage pattern of ``present`` (``(n, M)`` bool) with enough windows and positives."""
    out = []
    keys = np.array(["".join("1" if v else "0" for v in row) for row in np.asarray(present, dtype=bool)])
    y = np.asarray(labels)
    for pattern in sorted(set(keys.tolist())):
        rows = keys == pattern
        if "1" in pattern and rows.sum() >= PATTERN_MIN_WINDOWS and y[rows].sum() >= PATTERN_MIN_POSITIVES:
            out.append((pattern, fit_ensemble_temperature(z[rows], y[rows])))
    return tuple(out)


def fit_ensemble_temperature(z: np.ndarray, labels: np.ndarray) -> float:
    """Temperature in :data:`TEMPERATURE_BOUNDS` minimising the NLL of ``sigmoid(z / T)`` (bounded 1-D search).

    Parameters
    ----------
    z : numpy.ndarray
        Combined (mean calibrated) logits, shape ``(n,)``.
    labels : numpy.ndarray
        0/1 labels, shape ``(n,)``.

    Returns
    -------
    float
        1.0 when ``z`` carries no information (empty, or all zero).
    """
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if z.shape != y.shape or z.ndim != 1:
        raise EnsembleError(f"logits and labels must be equal-length vectors, got {z.shape} and {y.shape}")
    if not np.all(np.isfinite(z)):
        raise EnsembleError("non-finite combined logits")
    if z.size == 0 or not np.any(z):
        return 1.0
    lo, hi = TEMPERATURE_BOUNDS
    result = minimize_scalar(
        lambda log_t: _nll(z, y, math.exp(log_t)),
        bounds=(math.log(lo), math.log(hi)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(math.exp(result.x))


@dataclass(frozen=True, slots=True)
class Combined:
    """Combined probabilities of a batch and which members went into them."""

    probabilities: np.ndarray
    members: tuple[str, ...]
    partial: bool


@dataclass(frozen=True, slots=True)
class Combiner:
    """Mean of calibrated member logits, then one ensemble temperature (see the module docstring).

    Parameters
    ----------
    members : tuple of str
        Member model ids (``name@version``), in the column order of the logits it is given.
    member_temperatures : tuple of float
        Each member's calibration temperature (``ServedModel.temperature``), same order.
    temperature : float
        The ensemble temperature ``T_ens``.
    """

    members: tuple[str, ...]
    member_temperatures: tuple[float, ...]
    temperature: float = 1.0
    #: ``((pattern, T), ...)``: a temperature for windows where exactly the members marked ``1`` in
    #: ``pattern`` (one character per member, in order) are present. A one-lead bed is scored by the
    #: one-lead members only, a two-lead bed by all: averaging two logits or six spreads them differently,
    #: so one temperature cannot calibrate both. Other patterns (members skipped for lateness) use
    #: ``temperature``.
    pattern_temperatures: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if not self.members:
            raise EnsembleError("a combiner needs at least one member")
        if len(set(self.members)) != len(self.members):
            raise EnsembleError(f"duplicate members in {self.members}")
        if len(self.member_temperatures) != len(self.members):
            raise EnsembleError(
                f"{len(self.member_temperatures)} temperatures for {len(self.members)} members {self.members}"
            )
        for t in (*self.member_temperatures, self.temperature, *(t for _, t in self.pattern_temperatures)):
            if not (math.isfinite(t) and t > 0):
                raise EnsembleError(f"temperatures must be finite and positive, got {t}")
        for pattern, _ in self.pattern_temperatures:
            if len(pattern) != len(self.members) or set(pattern) - {"0", "1"}:
                raise EnsembleError(f"pattern {pattern!r} does not describe {len(self.members)} members")

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        members: Sequence[str],
        member_temperatures: Sequence[float],
        logits: np.ndarray,
        labels: np.ndarray,
        present: np.ndarray | None = None,
    ) -> Combiner:
        """Fit the ensemble temperature on validation windows.

        Parameters
        ----------
        members, member_temperatures : sequence
            As for the class.
        logits : numpy.ndarray
            Uncalibrated member logits of the validation windows, shape ``(n, M)``; NaN = not present.
        labels : numpy.ndarray
            0/1 labels, shape ``(n,)``.
        present : numpy.ndarray, optional
            bool ``(n, M)``; by default the finite entries of ``logits``.

        Returns
        -------
        Combiner
        """
        unfitted = cls(tuple(members), tuple(float(t) for t in member_temperatures), 1.0)
        z = unfitted.combined_logits(logits, present)
        y = np.asarray(labels)
        if y.shape != z.shape:
            raise EnsembleError(f"{y.shape[0] if y.ndim else 0} labels for {z.shape[0]} windows")
        return cls(unfitted.members, unfitted.member_temperatures, fit_ensemble_temperature(z, y))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (see :meth:`from_dict`)."""
        return {
            "members": list(self.members),
            "member_temperatures": list(self.member_temperatures),
            "temperature": self.temperature,
            "pattern_temperatures": dict(self.pattern_temperatures),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Combiner:
        try:
            return cls(
                tuple(str(m) for m in data["members"]),
                tuple(float(t) for t in data["member_temperatures"]),
                float(data["temperature"]),
                tuple((str(p), float(t)) for p, t in dict(data.get("pattern_temperatures") or {}).items()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EnsembleError(f"invalid combiner description: {exc}") from exc

    # -- scoring -----------------------------------------------------------------------------------

    def _present(self, logits: np.ndarray, present: np.ndarray | None) -> np.ndarray:
        finite = np.isfinite(logits)
        if present is None:
            return finite
        mask = np.asarray(present, dtype=bool)
        if mask.shape == (logits.shape[1],):
            mask = np.broadcast_to(mask, logits.shape)
        if mask.shape != logits.shape:
            raise EnsembleError(f"present mask of shape {mask.shape} for logits of shape {logits.shape}")
        if np.any(mask & ~finite):
            raise EnsembleError("a member marked present has a non-finite logit")
        return mask

    def _check(self, logits: np.ndarray) -> np.ndarray:
        x = np.asarray(logits, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.members):
            raise EnsembleError(f"logits must have shape (batch, {len(self.members)}), got {x.shape}")
        return x

    def combined_logits(self, logits: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
        """Mean calibrated logit per window, before the ensemble temperature (0 where no member is present).

        Parameters
        ----------
        logits : numpy.ndarray
            Uncalibrated logits, shape ``(B, M)`` in :attr:`members` order; NaN = member not present.
        present : numpy.ndarray, optional
            bool mask ``(B, M)``, or ``(M,)`` for whole columns (members that did not finish); by default
            the finite entries.

        Returns
        -------
        numpy.ndarray
            float64, shape ``(B,)``.
        """
        x = self._check(logits)
        mask = self._present(x, present)
        calibrated = x / np.asarray(self.member_temperatures, dtype=np.float64)
        return mean_calibrated_logit(calibrated, mask)

    def combine(self, logits: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
        """Combined AF probabilities from the members' uncalibrated logits.

        Parameters
        ----------
        logits, present : numpy.ndarray
            As for :meth:`combined_logits`.

        Returns
        -------
        numpy.ndarray
            float64 probabilities, shape ``(B,)``; 0.5 for a window no member scored.
        """
        x = self._check(logits)
        mask = self._present(x, present)
        z = mean_calibrated_logit(x / np.asarray(self.member_temperatures, dtype=np.float64), mask)
        return np.asarray(expit(z / self.row_temperatures(mask)), dtype=np.float64)

    def row_temperatures(self, present: np.ndarray) -> np.ndarray:
        """The ensemble temperature of each row of a ``(B, M)`` present mask (see ``pattern_temperatures``)."""
        t = np.full(present.shape[0], self.temperature)
        for pattern, value in self.pattern_temperatures:
            wanted = np.array([c == "1" for c in pattern])
            t[np.all(present == wanted, axis=1)] = value
        return t

    def combine_probabilities(self, probabilities: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
        """Combined AF probabilities from the members' *calibrated* probabilities (``ServedModel.predict``).

        Each is turned back into its calibrated logit (clipped to ``[1e-7, 1 - 1e-7]``, so a saturated member
        counts as logit +-16.1); prefer :meth:`combine` with the raw logits where they are at hand.
        """
        p = self._check(probabilities)
        mask = self._present(p, present)
        q = np.clip(np.where(mask, p, 0.5), _P_CLIP, 1.0 - _P_CLIP)
        z = mean_calibrated_logit(np.log(q) - np.log1p(-q), mask)
        return np.asarray(expit(z / self.row_temperatures(mask)), dtype=np.float64)

    def combine_members(self, logits_by_member: Mapping[str, np.ndarray]) -> Combined:
        """Combine whatever members finished: ``{model_id: uncalibrated logits (B,)}``.

        Members of the ensemble missing from the mapping are not present for any window; the result is then
        ``partial``. Ids that are not members are an error (a wiring bug, not lateness).
        """
        unknown = sorted(set(logits_by_member) - set(self.members))
        if unknown:
            raise EnsembleError(f"{unknown} are not members of {self.members}")
        if not logits_by_member:
            raise EnsembleError("no member finished: nothing to combine")
        sizes = {np.shape(v) for v in logits_by_member.values()}
        if len(sizes) != 1 or len(next(iter(sizes))) != 1:
            raise EnsembleError(f"member logits must be vectors of one length, got shapes {sorted(sizes)}")
        (batch,) = next(iter(sizes))
        columns = np.full((batch, len(self.members)), np.nan)
        for j, member in enumerate(self.members):
            if member in logits_by_member:
                columns[:, j] = np.asarray(logits_by_member[member], dtype=np.float64)
        used = tuple(m for m in self.members if m in logits_by_member)
        return Combined(self.combine(columns), used, partial=len(used) < len(self.members))
