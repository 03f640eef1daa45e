"""Settings for every process kind, read from ``HOLMES_*`` environment variables (and ``.env``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.topics import Topics


class CommonSettings(BaseSettings):
    """What every holmes process shares."""

    model_config = SettingsConfigDict(env_prefix="HOLMES_", env_file=".env", extra="ignore", frozen=True)

    kafka_bootstrap: str | None = Field(
        default=None, description="host:port of a Kafka cluster; unset = start the embedded Tansu broker"
    )
    topic_prefix: str = "holmes"
    waveform_partitions: int = Field(default=16, ge=1, le=256)
    score_partitions: int = Field(default=4, ge=1, le=64)
    data_dir: Path = Field(default=Path("../shared/data"), description="PhysioNet folders mitdb/ and cinc2017/")
    state_dir: Path = Field(default=Path(".holmes"), description="logs, SQLite file, worker state")
    log_level: str = "info"
    hop_s: float = Field(default=5.0, gt=0, description="how often each bed gets a window; stale after 2 hops")
    api_fetch_max_wait_ms: int = Field(
        default=50, ge=1, le=1500,
        description="the API's score consumer's fetch wait; the worker's latency model counts it downstream",
    )

    def topics(self) -> Topics:
        return Topics.named(self.topic_prefix, self.waveform_partitions, self.score_partitions)


class WorkerSettings(CommonSettings):
    """The windowing and scoring worker."""

    window_s: float = Field(default=10.0, description="prediction window length; 10 and 30 are supported")
    sample_rate_hz: float = 250.0
    fetch_max_wait_ms: int = Field(default=50, ge=0, le=1500)
    max_reorder_chunks: int = Field(default=2, ge=0, le=16)
    max_beds: int = Field(default=10_000, ge=1, description="most beds one worker tracks; more are dead-lettered")
    bed_evict_s: float = Field(default=900.0, gt=0, description="a bed silent this long is forgotten")
    max_future_s: float = Field(default=300.0, gt=0,
                                description="chunks stamped further ahead of the worker's clock are dead-lettered")
    model_dir: Path | None = Field(default=None, description="model artifacts; unset = the packaged ones")
    budget_ms: float = Field(default=1000.0, gt=0, le=60_000, description="end-to-end p99 budget of a score")
    exec_mode: Literal["batched", "per-request", "offline"] = Field(
        default="batched", description="batched across beds; one window per call (HOLMES); periodic batch jobs"
    )
    offline_period_s: float = Field(default=30.0, gt=0, le=3600, description="period of the offline batch jobs")
    max_batch: int = Field(default=256, ge=1, le=4096, description="most windows per executor call")
    feature_process: bool = Field(default=True,
                                  description="extract features in a child process, off the worker's GIL")
    max_members: int = Field(default=6, ge=1, le=16, description="largest ensemble the selector may choose")
    max_utilisation: float = Field(
        default=0.8, gt=0, le=1.0,
        description="most of its time a new plan may keep the executor busy (predicted): headroom for contention",
    )
    plan_beds: int = Field(default=64, ge=1, description="beds assumed by the first plan, before any is seen")
    plan_phases: int = Field(default=1, ge=1, le=3600,
                             description="ticks per hop the first plan assumes windows fall due in (1 = all at once)")
    cpu_contention: float = Field(
        default=1.0, ge=1.0, le=20.0,
        description="how much slower CPU work is assumed to run than profiled until measured (shared machine)",
    )
    ensemble: str = Field(
        default="", description="comma-separated model ids to serve whatever the load (no selection, no re-plans)"
    )
    replan_interval_s: float = Field(default=1.0, gt=0, le=60, description="how often the load is re-examined")
    device: Literal["cpu", "cuda", "auto"] = Field(
        default="cpu", description="where the worker runs its models; auto = cuda when torch sees a GPU, else cpu"
    )


class ApiSettings(CommonSettings):
    """The FastAPI service."""

    database_url: str = Field(default="", description="SQLAlchemy URL; unset = SQLite in state_dir")
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    env: Literal["dev", "production"] = Field(
        default="dev", description="production: HOLMES_ADMIN_TOKEN required, reads need a token"
    )
    admin_token: SecretStr | None = Field(
        default=None, description="bootstraps the user 'admin'; unset in dev = a token generated and printed per run"
    )
    api_anonymous_read: bool | None = Field(
        default=None, description="reads (page, GETs, WebSocket) without a token; unset = dev yes, production no"
    )
    session_ttl_s: float = Field(default=12 * 3600.0, gt=0, description="lifetime of a sign-in session")
    alert_threshold: float = Field(default=0.7, gt=0, le=1, description="AF risk that counts towards an alert")
    alert_clear_threshold: float = Field(default=0.5, gt=0, le=1, description="AF risk under which an alert clears")
    alert_raise_windows: int = Field(default=3, ge=1, le=1000, description="consecutive windows >= threshold to raise")
    alert_clear_windows: int = Field(default=3, ge=1, le=1000, description="consecutive windows < clear to clear")
    score_retention_s: float = Field(default=7 * 24 * 3600.0, ge=0, description="score history kept; 0 = forever")
    cors_origins: str = Field(
        default="", description="comma-separated origins (https://host[:port]) allowed to call the api from a "
                                "browser page they serve (CORS); empty = none"
    )

    def cors_origin_list(self) -> tuple[str, ...]:
        """``cors_origins`` as a tuple, blanks dropped."""
        return tuple(o.strip() for o in self.cors_origins.split(",") if o.strip())

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.state_dir / 'holmes.db').resolve()}"


class Settings(WorkerSettings, ApiSettings):
    """All settings, for the commands that run several processes (``up``, ``bench``)."""
