"""Configuration of the api process, built by the caller (the ``holmes api`` CLI) and passed in."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import SecretStr

from api.errors import ConfigError
from ingest.topics import Topics

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: The bootstrap admin token must be at least this long (``secrets.token_urlsafe(32)`` gives 43 characters).
MIN_ADMIN_TOKEN_CHARS = 32
#: A CORS origin as browsers send it: scheme, host and optional port; no path, no wildcard.
_ORIGIN = re.compile(r"https?://(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")

Env = Literal["dev", "production"]


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """Everything the api needs; ``kafka_bootstrap=None`` runs without a consumer (tests, read-only).

    ``env="production"`` refuses to build without ``admin_token``; in ``dev`` a missing admin token is generated
    at start-up and logged. ``anonymous_read=None`` means: reads need no token in ``dev``, a viewer token in
    ``production``. Writes always need a token with the right role.
    """

    database_url: str = "sqlite:///holmes.db"
    kafka_bootstrap: str | None = None
    scores_topic: str = Topics.named().scores.name
    #: ``None`` disables the dead-letter monitor (counts and last letters on the ensemble page).
    deadletter_topic: str | None = Topics.named().deadletter.name
    #: ``None`` disables the plans reader (selection, budget and re-plans on the ensemble page; stored ones stay).
    plans_topic: str | None = Topics.named().plans.name
    consumer_group: str = "holmes-api"
    # The embedded broker holds an empty fetch for about half of this even when data arrives (BROKER.md),
    # so it bounds the broker-to-dashboard latency.
    fetch_max_wait_ms: int = 20
    static_dir: Path = STATIC_DIR
    ws_queue_size: int = 256
    write_queue_batches: int = 16
    connect_backoff_max_s: float = 10.0
    # -- auth --
    env: Env = "dev"
    admin_token: SecretStr | None = None
    anonymous_read: bool | None = None
    session_ttl_s: float = 12 * 3600.0
    # -- the stream's cadence: a bed with no score for 2 x hop is stale --
    hop_s: float = 5.0
    # -- alerts: raise after N consecutive ok windows >= threshold, clear after M consecutive < clear threshold --
    alert_threshold: float = 0.7
    alert_clear_threshold: float = 0.5
    alert_raise_windows: int = 3
    alert_clear_windows: int = 3
    # -- retention of score history (0 keeps it forever); alerts, audit and users are never purged --
    score_retention_s: float = 7 * 24 * 3600.0
    retention_interval_s: float = 600.0
    #: How much history the tiles' sparklines show.
    trend_window_s: float = 3600.0
    recent_dead_letters: int = 20
    #: Re-plans kept in memory for ``GET /api/ensemble`` (the table keeps them all).
    recent_plans: int = 20
    #: Origins whose pages may call the api from a browser (CORS); empty = none (same origin only).
    cors_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.fetch_max_wait_ms <= 5_000:
            raise ConfigError(f"fetch_max_wait_ms must be in [1, 5000], not {self.fetch_max_wait_ms}")
        if self.ws_queue_size < 1:
            raise ConfigError(f"ws_queue_size must be >= 1, not {self.ws_queue_size}")
        if self.write_queue_batches < 1:
            raise ConfigError(f"write_queue_batches must be >= 1, not {self.write_queue_batches}")
        if self.connect_backoff_max_s <= 0:
            raise ConfigError(f"connect_backoff_max_s must be > 0, not {self.connect_backoff_max_s}")
        if not self.scores_topic or not self.consumer_group or "" in (self.deadletter_topic, self.plans_topic):
            raise ConfigError("scores_topic, deadletter_topic, plans_topic and consumer_group must not be empty")
        if self.env not in ("dev", "production"):
            raise ConfigError(f"env must be 'dev' or 'production', not {self.env!r}")
        token = self.admin_token.get_secret_value() if self.admin_token is not None else None
        if self.env == "production" and (token is None or len(token.strip()) < MIN_ADMIN_TOKEN_CHARS):
            raise ConfigError(
                f"HOLMES_ENV=production needs HOLMES_ADMIN_TOKEN set to a secret of at least {MIN_ADMIN_TOKEN_CHARS} "
                "characters (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        if token is not None and not token.strip():
            raise ConfigError("HOLMES_ADMIN_TOKEN (admin_token) must not be blank")
        for name in ("hop_s", "session_ttl_s", "retention_interval_s", "trend_window_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be a finite number > 0, not {value}")
        if not math.isfinite(self.score_retention_s) or self.score_retention_s < 0:
            raise ConfigError(f"score_retention_s must be >= 0 (0 keeps everything), not {self.score_retention_s}")
        if not 0 < self.alert_clear_threshold <= self.alert_threshold <= 1:
            raise ConfigError(
                "alert thresholds must satisfy 0 < alert_clear_threshold <= alert_threshold <= 1, not "
                f"{self.alert_clear_threshold} and {self.alert_threshold}"
            )
        if not 1 <= self.alert_raise_windows <= 1000 or not 1 <= self.alert_clear_windows <= 1000:
            raise ConfigError("alert_raise_windows and alert_clear_windows must be in [1, 1000]")
        if not 1 <= self.recent_dead_letters <= 1000:
            raise ConfigError(f"recent_dead_letters must be in [1, 1000], not {self.recent_dead_letters}")
        if not 1 <= self.recent_plans <= 1000:
            raise ConfigError(f"recent_plans must be in [1, 1000], not {self.recent_plans}")
        for origin in self.cors_origins:
            # No "*": an explicit list of the hospital's own front ends, never any site a clinician visits.
            if not isinstance(origin, str) or not _ORIGIN.fullmatch(origin):
                raise ConfigError(f"a CORS origin is scheme://host[:port] without a path or wildcard, not {origin!r}")

    @property
    def reads_need_token(self) -> bool:
        """Whether GETs and the WebSocket need a viewer token (see ``anonymous_read``)."""
        if self.anonymous_read is None:
            return self.env == "production"
        return not self.anonymous_read

    @property
    def stale_after_s(self) -> float:
        """A bed with no score for this long is stale: two hop intervals."""
        return 2 * self.hop_s
