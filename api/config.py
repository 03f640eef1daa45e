"""Configuration of the api process, built by the caller (the ``holmes api`` CLI) and passed in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from api.errors import ConfigError
from ingest.topics import Topics

STATIC_DIR = Path(__file__).resolve().parent / "static"


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """Everything the api needs; ``kafka_bootstrap=None`` runs without a consumer (tests, read-only)."""

    database_url: str = "sqlite:///holmes.db"
    kafka_bootstrap: str | None = None
    scores_topic: str = Topics.named().scores.name
    consumer_group: str = "holmes-api"
    # The embedded broker holds an empty fetch for about half of this even when data arrives (BROKER.md),
    # so it bounds the broker-to-dashboard latency.
    fetch_max_wait_ms: int = 20
    static_dir: Path = STATIC_DIR
    ws_queue_size: int = 256
    write_queue_batches: int = 16
    connect_backoff_max_s: float = 10.0

    def __post_init__(self) -> None:
        if not 1 <= self.fetch_max_wait_ms <= 5_000:
            raise ConfigError(f"fetch_max_wait_ms must be in [1, 5000], not {self.fetch_max_wait_ms}")
        if self.ws_queue_size < 1:
            raise ConfigError(f"ws_queue_size must be >= 1, not {self.ws_queue_size}")
        if self.write_queue_batches < 1:
            raise ConfigError(f"write_queue_batches must be >= 1, not {self.write_queue_batches}")
        if self.connect_backoff_max_s <= 0:
            raise ConfigError(f"connect_backoff_max_s must be > 0, not {self.connect_backoff_max_s}")
        if not self.scores_topic or not self.consumer_group:
            raise ConfigError("scores_topic and consumer_group must not be empty")
