"""Topic names and their creation with explicit partition counts."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ingest.errors import IngestError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic with its partition count; waveforms are keyed by bed id so a bed stays on one partition."""

    name: str
    partitions: int
    replication_factor: int = 1


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of the stream path, named with a common prefix: waveforms in, scores and dead letters out,
    and the ensemble plans each worker puts in force (one partition: few records, read in order)."""

    waveforms: TopicSpec
    scores: TopicSpec
    deadletter: TopicSpec
    plans: TopicSpec

    @classmethod
    def named(
        cls, prefix: str = "holmes", waveform_partitions: int = 16, score_partitions: int = 4
    ) -> Topics:
        return cls(
            waveforms=TopicSpec(f"{prefix}.waveforms", waveform_partitions),
            scores=TopicSpec(f"{prefix}.scores", score_partitions),
            deadletter=TopicSpec(f"{prefix}.deadletter", 1),
            plans=TopicSpec(f"{prefix}.plans", 1),
        )

    def all(self) -> tuple[TopicSpec, ...]:
        return (self.waveforms, self.scores, self.deadletter, self.plans)


def ensure_topics(bootstrap: str, specs: tuple[TopicSpec, ...], timeout_s: float = 30.0) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="holmes-admin",
                                     request_timeout_ms=10_000)
            break
        except (KafkaConnectionError, KafkaError) as exc:
            if time.monotonic() > deadline:
                raise IngestError(f"no Kafka broker at {bootstrap}") from exc
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        for spec in specs:
            if spec.name in existing:
                continue
            try:
                admin.create_topics(
                    [NewTopic(spec.name, num_partitions=spec.partitions,
                              replication_factor=spec.replication_factor)]
                )
                log.info("created topic %s with %d partitions", spec.name, spec.partitions)
            except TopicAlreadyExistsError:
                pass
            except KafkaError as exc:
                raise IngestError(f"could not create topic {spec.name}: {exc}") from exc
    finally:
        admin.close()
