"""``holmes fuzz``: hostile messages on the live waveform topic while real beds stream; nothing may be lost.

The stack runs as ``holmes bench`` runs it (embedded broker unless ``HOLMES_KAFKA_BOOTSTRAP`` is set, unique topic
prefix, worker and API as child processes, the simulator streaming real beds). Meanwhile N hostile messages go
to the same waveform topic, spread over the run. Afterwards every hostile message must be found in the
dead-letter topic with a reason of its class (matched by key and payload digest, the two things a dead letter
carries), the worker must still be running, and every window of the real beds must have reached the WebSocket
and the database.

Kinds of hostile message (``KINDS``): malformed headers, truncated chunks, oversized messages, a wrong schema
version, NaN/Inf samples, a wrong sample rate, a key that is not the chunk's bed id, hostile bed ids, random
garbage, empty and null payloads, null keys (on bad and on valid chunks), valid chunks of fuzz-only beds whose
sequence numbers and time stamps leap ahead together (``seq-jump``: a monitor that was off; accepted, so they must
*not* be dead-lettered, and must not stall the worker), and valid chunks under a real bed's key whose sequence
number leaps far ahead of its time stamp, or whose time stamp is far in the future (``forged-seq``: sent only once
every real bed has been scored, so that the worker knows where each bed stands; they must not silence it).
Hostile chunks name real beds as often as fuzz-only ones, so a check that let one through would show up as a
lost or corrupted window of a real bed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import random
import struct
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from holmes.settings import Settings
from ingest.codec import MAX_MESSAGE_BYTES, encode_chunk
from ingest.schemas import WaveformChunk
from ingest.worker import DEADLETTER_PAYLOAD_BYTES

log = logging.getLogger(__name__)

#: What each kind sends, and the dead-letter reasons it may get (empty: a valid chunk, never dead-lettered).
KINDS: dict[str, str] = {
    "malformed": "a chunk with one defective header field or lead name, or trailing bytes",
    "truncated": "a valid chunk cut short",
    "oversized": f"a valid chunk padded beyond {MAX_MESSAGE_BYTES} bytes",
    "wrong-schema": "a chunk with another schema version",
    "non-finite": "a float32 chunk with NaN or Inf samples",
    "wrong-rate": "a chunk at another sample rate, in range or not",
    "key-mismatch": "a valid chunk whose Kafka key is not its bed id",
    "bad-bed-id": "a chunk whose bed id is huge, empty, has control characters, unicode or is not utf-8",
    "garbage": "random bytes",
    "empty": "an empty payload or a null one (tombstone)",
    "null-key": "a bad payload of another kind, or a valid chunk, without a key",
    "seq-jump": "a valid chunk of a fuzz-only bed whose sequence number and time stamp leap ahead together",
    "forged-seq": "a valid chunk under a real bed's key, its sequence number far ahead of its time stamp, or its "
                  "time stamp far in the future",
}
#: Oversized messages are large (~300 kB, twice over with their dead letter): fewer of them.
WEIGHTS: dict[str, float] = {**dict.fromkeys(KINDS, 1.0), "oversized": 0.25, "seq-jump": 0.5}
#: Fuzz-only beds' streams start this long before the run, so that their leaps never reach the future.
_FUZZ_BED_LEAD_S = 1e7

_HEADER = struct.Struct("<2sBBQdffBIB")  # ingest.codec's waveform layout, version 1
FS_HZ = 250.0
LEADS = (b"MLII", b"V1")


def fingerprint(key: bytes | None, value: bytes | None) -> tuple[str, int, str]:
    """What identifies a message in its dead letter: the key (base64, cut at 512 characters as the worker cuts it),
    the payload's length and the digest of the part of it the dead letter keeps."""
    raw = value or b""
    digest = hashlib.sha256(raw[:DEADLETTER_PAYLOAD_BYTES]).hexdigest()
    return base64.b64encode(key or b"").decode()[:512], len(raw), digest


def letter_fingerprint(letter: dict[str, Any]) -> tuple[str, int, str]:
    """:func:`fingerprint` of the message a dead letter carries."""
    raw = base64.b64decode(letter.get("payload_b64") or "")
    return str(letter.get("key_b64") or ""), int(letter.get("payload_bytes") or 0), hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True, slots=True)
class Hostile:
    """One hostile message and the dead-letter reasons it may get (empty: it must be accepted)."""

    kind: str
    key: bytes | None
    value: bytes | None
    reasons: frozenset[str]


def _layout(bed: bytes, names: Sequence[bytes], samples: bytes, *, magic: bytes = b"HW", version: int = 1,
            dtype: int = 1, seq: int = 0, t0_s: float = 0.0, fs: float = FS_HZ, gain: float = 200.0,
            n_leads: int | None = None, n_samples: int | None = None) -> bytes:
    """Chunk bytes laid out field by field, with any value in any field (the encoder refuses most of these)."""
    if n_leads is None:
        n_leads = len(names)
    if n_samples is None:
        n_samples = len(samples) // max(1, len(names)) // (4 if dtype == 2 else 2)
    head = _HEADER.pack(magic, version, dtype, seq, t0_s, fs, gain, n_leads, n_samples, len(bed))
    return head + bed + b"".join(bytes([len(n)]) + n for n in names) + samples


class HostileFactory:
    """The hostile messages of one run, reproducible from ``seed``; ``make(i)`` builds message ``i``."""

    def __init__(self, seed: int, real_beds: Sequence[str], t0_s: float, *, n_fuzz_beds: int = 3,
                 weights: dict[str, float] | None = None) -> None:
        self.rng = random.Random(seed)
        self.real_beds = list(real_beds)
        self.fuzz_beds = [f"fuzz-{k:02d}" for k in range(1, n_fuzz_beds + 1)]
        self.t0_s = t0_s
        weights = weights or WEIGHTS
        self.kinds = [k for k in KINDS if weights.get(k, 0) > 0]
        self.weights = [weights[k] for k in self.kinds]
        self._next_seq = dict.fromkeys(self.fuzz_beds, 0)
        self._builders: dict[str, Callable[[int], Hostile]] = {
            "malformed": self._malformed, "truncated": self._truncated, "oversized": self._oversized,
            "wrong-schema": self._wrong_schema, "non-finite": self._non_finite, "wrong-rate": self._wrong_rate,
            "key-mismatch": self._key_mismatch, "bad-bed-id": self._bad_bed_id, "garbage": self._garbage,
            "empty": self._empty, "null-key": self._null_key, "seq-jump": self._seq_jump,
            "forged-seq": self._forged_seq,
        }

    def make(self, i: int) -> Hostile:
        """Message ``i`` of the run (call in order: the factory is stateful)."""
        kind = self.rng.choices(self.kinds, self.weights)[0]
        return self._builders[kind](i)

    # --- building blocks ---

    def _bed(self) -> str:
        """A real bed as often as a fuzz-only one: a hostile chunk that got through would corrupt a real bed."""
        return self.rng.choice(self.real_beds if self.rng.random() < 0.5 else self.fuzz_beds)

    def _samples(self, n: int, n_leads: int = 2) -> np.ndarray:
        data = self.rng.randbytes(2 * n * n_leads)
        return np.frombuffer(data, dtype="<i2").reshape(n_leads, n) // 64

    def _chunk(self, i: int, bed: str | None = None, fs: float = FS_HZ, seq: int | None = None,
               t0_s: float | None = None) -> bytes:
        """A valid chunk; ``t0_s`` carries the message index unless given, so no two messages have the same bytes."""
        n = max(1, round(fs))
        chunk = WaveformChunk(bed or self._bed(), self.rng.randrange(100_000) if seq is None else seq,
                              self.t0_s + i * 1e-3 if t0_s is None else t0_s, fs, tuple(x.decode() for x in LEADS),
                              self._samples(n), 200.0)
        return encode_chunk(chunk)

    def _raw(self, i: int, bed: bytes, **fields: Any) -> bytes:
        """A chunk laid out by hand (for field values the encoder would refuse); fields override the defaults."""
        names = fields.pop("names", LEADS)
        n = fields.pop("n", 250)
        samples = fields.pop("samples", None)
        if samples is None:
            samples = self._samples(n, len(names)).tobytes()
        fields.setdefault("seq", self.rng.randrange(100_000))
        fields.setdefault("t0_s", self.t0_s + i * 1e-3)
        return _layout(bed, names, samples, **fields)

    # --- kinds ---

    def _malformed(self, i: int) -> Hostile:
        bed = self._bed().encode()
        rng = self.rng
        variants: list[tuple[str, Callable[[], bytes]]] = [
            ("bad-magic", lambda: self._raw(i, bed, magic=rng.choice([b"XW", b"WH", b"\x00\x00", b"{\""]))),
            ("wrong-schema", lambda: self._raw(i, bed, dtype=rng.choice([0, 3, 4, 255]))),
            ("bad-seq", lambda: self._raw(i, bed, seq=rng.randrange(2**63, 2**64))),
            ("bad-timestamp", lambda: self._raw(i, bed, t0_s=rng.choice([math.nan, math.inf, -1.0, -1e9]))),
            ("bad-gain", lambda: self._raw(i, bed, gain=rng.choice([0.0, -200.0, math.nan, math.inf, 1e-40]))),
            ("bad-shape", lambda: self._raw(i, bed, n_leads=rng.choice([0, 13, 200, 255]))),
            ("bad-shape", lambda: self._raw(i, bed, n_samples=rng.choice([0, 2501, 10**6, 2**32 - 1]))),
            ("bad-lead-name", lambda: self._raw(i, bed, names=[b"ML\x00I", b"V1"])),
            ("bad-lead-name", lambda: self._raw(i, bed, names=[b"MLII", "V\u00b9".encode()])),
            ("bad-lead-name", lambda: self._raw(i, bed, names=[b"", b"V1"])),
            ("bad-lead-name", lambda: self._raw(i, bed, names=[b"M" * 17, b"V1"])),
            ("trailing-bytes", lambda: self._chunk(i, bed.decode()) + rng.randbytes(rng.randint(1, 16))),
        ]
        reason, build = rng.choice(variants)
        return Hostile("malformed", bed, build(), frozenset({reason}))

    def _truncated(self, i: int) -> Hostile:
        bed = self._bed()
        data = self._chunk(i, bed)
        return Hostile("truncated", bed.encode(), data[: self.rng.randrange(1, len(data))], frozenset({"truncated"}))

    def _oversized(self, i: int) -> Hostile:
        bed = self._bed()
        data = self._chunk(i, bed)
        size = MAX_MESSAGE_BYTES + 1 + self.rng.randrange(64 * 1024)
        return Hostile("oversized", bed.encode(), data + bytes(size - len(data)), frozenset({"oversized"}))

    def _wrong_schema(self, i: int) -> Hostile:
        bed = self._bed().encode()
        return Hostile("wrong-schema", bed, self._raw(i, bed, version=self.rng.choice([0, 2, 3, 127, 255])),
                       frozenset({"wrong-schema"}))

    def _non_finite(self, i: int) -> Hostile:
        bed = self._bed().encode()
        samples = (np.frombuffer(self.rng.randbytes(4 * 500), "<i4").astype("<f4") / 2**31).reshape(2, 250)
        for _ in range(self.rng.randint(1, 5)):
            samples[self.rng.randrange(2), self.rng.randrange(250)] = self.rng.choice([np.nan, np.inf, -np.inf])
        return Hostile("non-finite", bed, self._raw(i, bed, dtype=2, gain=1.0, samples=samples.tobytes()),
                       frozenset({"non-finite"}))

    def _wrong_rate(self, i: int) -> Hostile:
        bed = self._bed()
        if self.rng.random() < 0.6:  # a rate the codec allows, but not this stream's
            fs = self.rng.choice([125.0, 128.0, 200.0, 249.5, 256.0, 360.0, 500.0, 1000.0])
            return Hostile("wrong-rate", bed.encode(), self._chunk(i, bed, fs=fs), frozenset({"wrong-rate"}))
        fs = self.rng.choice([0.0, 10.0, 49.5, 2000.5, 5000.0, -250.0, math.nan, math.inf])
        return Hostile("wrong-rate", bed.encode(), self._raw(i, bed.encode(), fs=fs), frozenset({"bad-rate"}))

    def _key_mismatch(self, i: int) -> Hostile:
        bed = self._bed()
        others = [b for b in self.real_beds + self.fuzz_beds if b != bed]
        key = self.rng.choice([
            self.rng.choice(others).encode() if others else b"other",
            bed.upper().encode() if bed.upper() != bed else b"BED",
            bed.encode() + b"\x00", bed.encode() + b" ", b"",
            self.rng.randbytes(self.rng.randint(1, 600)),
        ])
        if key == bed.encode():
            key += b"!"
        return Hostile("key-mismatch", key, self._chunk(i, bed), frozenset({"key-mismatch"}))

    _HOSTILE_IDS = (
        b"", b"b" * 65, b"x" * 255, b"bed-001\n", b"bed\x00001", b"\x1b[2Jbed", b"bed\t001", b"bed 001",
        "b\u00ebd-001".encode(), "\u5e8a-001".encode(), "bed-001\u200b".encode(), "\u202ebed-001".encode(),
        "bed-00\u0661".encode(), b"\xff\xfebed", b"-bed-001", b"'; DROP TABLE scores;--", b"../../etc/passwd",
        "\U0001f6cf\ufe0f".encode(),
    )

    def _bad_bed_id(self, i: int) -> Hostile:
        bed = self.rng.choice(self._HOSTILE_IDS)
        if self.rng.random() < 0.2:  # and a few random unicode ones (never a valid id: it contains a space)
            bed = (" " + "".join(chr(self.rng.randrange(32, 0x2FFF)) for _ in range(self.rng.randint(1, 40))))
            bed = bed.encode("utf-8", "surrogatepass")[:255]
        return Hostile("bad-bed-id", bed, self._raw(i, bed), frozenset({"bad-bed-id"}))

    def _garbage(self, i: int) -> Hostile:
        data = self.rng.randbytes(self.rng.randint(1, 2048))
        if data[:2] == b"HW":
            data = b"\x00" + data[1:]
        reason = "truncated" if len(data) < _HEADER.size else "bad-magic"
        return Hostile("garbage", self._bed().encode(), data, frozenset({reason}))

    def _empty(self, i: int) -> Hostile:
        if self.rng.random() < 0.5:
            return Hostile("empty", self._bed().encode(), b"", frozenset({"truncated"}))
        return Hostile("empty", self._bed().encode(), None, frozenset({"wrong-type"}))

    def _null_key(self, i: int) -> Hostile:
        kind = self.rng.choice(["malformed", "truncated", "wrong-schema", "non-finite", "wrong-rate", "bad-bed-id",
                                "garbage"])
        if self.rng.random() < 0.3:
            return Hostile("null-key", None, self._chunk(i, self.rng.choice(self.real_beds)), frozenset({"null-key"}))
        inner = self._builders[kind](i)
        return Hostile("null-key", None, inner.value or b"\x00", inner.reasons)

    def _seq_jump(self, i: int) -> Hostile:
        bed = self.rng.choice(self.fuzz_beds)
        seq = self._next_seq[bed]
        self._next_seq[bed] = seq + self.rng.choice([1, 1, 2, 5, 1000])
        # one second per chunk, as the sequence number says: a gap, not a forgery
        t0_s = max(0.0, self.t0_s - _FUZZ_BED_LEAD_S) + seq
        return Hostile("seq-jump", bed.encode(), self._chunk(i, bed, seq=seq, t0_s=t0_s), frozenset())

    def _forged_seq(self, i: int) -> Hostile:
        bed = self.rng.choice(self.real_beds)
        seq = self.rng.choice([10**4, 10**6, 10**9, 2**40, 2**61]) + self.rng.randrange(1000)
        if self.rng.random() < 0.7:  # stamped now: the sequence number claims years that did not pass
            return Hostile("forged-seq", bed.encode(), self._chunk(i, bed, seq=seq), frozenset({"implausible-seq"}))
        t0_s = self.t0_s + 3600.0 + self.rng.random() * seq  # consistent with the leap, so from the future
        return Hostile("forged-seq", bed.encode(), self._chunk(i, bed, seq=seq, t0_s=t0_s),
                       frozenset({"future-timestamp"}))


@dataclass(frozen=True, slots=True)
class FuzzOptions:
    """A fuzz run: ``messages`` hostile messages spread over ``duration_s`` of ``beds`` streaming beds."""

    messages: int = 10_000
    beds: int = 8
    duration_s: float = 60.0
    seed: int = 0
    speed: float = 1.0
    source: str = "mitdb"
    window_s: float = 10.0
    hop_s: float = 5.0
    drain_s: float = 30.0
    json_path: Path | None = None
    run_dir: Path | None = None
    progress: bool = True


@dataclass(slots=True)
class Sent:
    """A hostile message as the accounting keeps it (its bytes are not kept); ``failed``: the broker refused it."""

    kind: str
    reasons: frozenset[str]
    failed: bool = False


class DeadLetterReader:
    """Reads the dead-letter topic from its start on a thread; keeps reason and fingerprint of every letter."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.letters: list[tuple[str, tuple[str, int, str], str]] = []  # (reason, fingerprint, source topic)
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fuzz-deadletters", daemon=True)

    def start(self) -> DeadLetterReader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        try:
            consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None,
                                     auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 2**20,
                                     fetch_max_bytes=64 * 2**20, client_id="holmes-fuzz-deadletters")
            try:
                parts = consumer.partitions_for_topic(self.topic) or {0}
                consumer.assign([TopicPartition(self.topic, p) for p in sorted(parts)])
                while not self._stop.is_set():
                    for records in consumer.poll(timeout_ms=200).values():
                        for record in records:
                            self._add(record.value)
            finally:
                consumer.close()
        except Exception as exc:  # reported in the summary
            log.exception("dead-letter reader failed")
            self.error = exc

    def _add(self, value: bytes | None) -> None:
        try:
            letter = json.loads(value or b"")
            self.letters.append((str(letter.get("reason")), letter_fingerprint(letter), str(letter.get("topic"))))
        except (ValueError, TypeError) as exc:
            self.letters.append(("unreadable-dead-letter", ("", 0, str(exc)[:80]), ""))


def account(sent: dict[tuple[str, int, str], list[Sent]], letters: Sequence[tuple[str, tuple[str, int, str], str]],
            waveform_topic: str) -> dict[str, Any]:
    """Match dead letters to the hostile messages sent; counts by kind, reasons, missing and unexpected letters."""
    pending = {fp: [s for s in group if not s.failed] for fp, group in sent.items()}
    by_kind: dict[str, dict[str, Any]] = {}
    for group in pending.values():
        for s in group:
            row = by_kind.setdefault(s.kind, {"sent": 0, "dead_lettered": 0, "missing": 0, "wrong_reason": 0,
                                              "accepted_as_expected": 0, "reasons": Counter()})
            row["sent"] += 1
    unexpected: Counter[str] = Counter()
    for reason, fp, topic in letters:
        group = pending.get(fp) or []
        # prefer a message this reason is right for; identical messages can have different reasons
        match = next((s for s in group if reason in s.reasons), group[0] if group else None)
        if match is None or topic != waveform_topic:
            unexpected[reason] += 1
            continue
        group.remove(match)
        row = by_kind[match.kind]
        row["dead_lettered"] += 1
        row["reasons"][reason] += 1
        row["wrong_reason"] += reason not in match.reasons
    for group in pending.values():
        for s in group:
            if s.reasons:
                by_kind[s.kind]["missing"] += 1
            else:
                by_kind[s.kind]["accepted_as_expected"] += 1
    for row in by_kind.values():
        row["reasons"] = dict(row["reasons"].most_common())
    return {
        "by_kind": {k: by_kind[k] for k in KINDS if k in by_kind},
        "missing": sum(r["missing"] for r in by_kind.values()),
        "wrong_reason": sum(r["wrong_reason"] for r in by_kind.values()),
        "unexpected_dead_letters": dict(unexpected),
    }


def run_fuzz(settings: Settings, options: FuzzOptions) -> dict[str, Any]:
    """Start a stack with unique topics, stream real beds and hostile messages, account for everything, stop."""
    import psutil
    from tqdm import tqdm

    from holmes.bench import ScoreListener
    from holmes.supervisor import Stack
    from ingest.broker import free_port
    from simulator.kafka import close_producer, make_producer
    from simulator.replay import SimulatorConfig, windows_expected

    run_dir = options.run_dir or Path(tempfile.mkdtemp(prefix="holmes-fuzz-"))
    prefix = f"fuzz{uuid.uuid4().hex[:8]}"
    settings = settings.model_copy(update={"topic_prefix": prefix, "state_dir": run_dir, "hop_s": options.hop_s,
                                           "window_s": options.window_s})
    topics = settings.topics()
    db_url = f"sqlite:///{run_dir / 'fuzz.db'}"
    env = {"HOLMES_TOPIC_PREFIX": prefix, "HOLMES_HOP_S": str(options.hop_s), "HOLMES_WINDOW_S": str(options.window_s),
           "HOLMES_DATABASE_URL": db_url, "HOLMES_LOG_LEVEL": "warning", "HOLMES_PLAN_BEDS": str(options.beds),
           "HOLMES_WAVEFORM_PARTITIONS": str(settings.waveform_partitions),
           "HOLMES_SCORE_PARTITIONS": str(settings.score_partitions),
           "HOLMES_DATA_DIR": str(Path(settings.data_dir).resolve())}
    real_beds = SimulatorConfig(n_beds=options.beds, duration_s=options.duration_s).bed_ids
    expected_windows = options.beds * windows_expected(options.duration_s, options.window_s, options.hop_s)
    real_s = options.duration_s / options.speed
    print(f"fuzz: {options.messages} hostile messages over {real_s:.0f} s while {options.beds} beds stream "
          f"{options.duration_s:.0f} s ({expected_windows} windows expected); seed {options.seed}; logs in {run_dir}",
          flush=True)
    sent: dict[tuple[str, int, str], list[Sent]] = {}
    kinds_sent: Counter[str] = Counter()
    api_port = free_port()
    worker_pid: int | None = None
    with Stack(settings, run_dir, api_port=api_port, env=env) as stack:
        stack.start()
        worker = next(c for c in stack.children if c.name == "worker")
        worker_pid = worker.pid
        reader = DeadLetterReader(stack.bootstrap, topics.deadletter.name).start()
        listener = ScoreListener(f"ws://127.0.0.1:{api_port}/ws/scores").start()
        producer = make_producer(stack.bootstrap, client_id="holmes-fuzz")
        factory = HostileFactory(options.seed, real_beds, time.time())
        sim = stack.spawn("simulator", [
            "simulate", "--beds", str(options.beds), "--duration", str(options.duration_s), "--source",
            options.source, "--speed", str(options.speed), "--seed", str(options.seed), "--quiet",
        ])
        t_start = time.time()

        def every_real_bed_scored() -> bool:
            return {bed for bed, _ in list(listener.arrivals)} >= set(real_beds)

        def send(msg: Hostile) -> None:
            record = Sent(msg.kind, msg.reasons)
            sent.setdefault(fingerprint(msg.key, msg.value), []).append(record)
            kinds_sent[msg.kind] += 1
            future = producer.send(topics.waveforms.name, key=msg.key, value=msg.value)
            future.add_errback(lambda exc, r=record: setattr(r, "failed", True))

        # A forged chunk before a bed's first genuine one would be that bed's first chunk: forged ones wait until
        # every real bed has been scored (the worker then knows where each stands).
        deferred: list[Hostile] = []
        try:
            with tqdm(total=options.messages, desc="hostile messages", unit="msg", mininterval=0.5,
                      disable=not options.progress) as bar:
                for i in range(options.messages):
                    due = t_start + real_s * i / max(1, options.messages)
                    if (wait := due - time.time()) > 0:
                        time.sleep(wait)
                    msg = factory.make(i)
                    if msg.kind == "forged-seq" and not every_real_bed_scored():
                        deferred.append(msg)
                    else:
                        send(msg)
                        if deferred and every_real_bed_scored():
                            for held in deferred:
                                send(held)
                            deferred.clear()
                    bar.update()
                wait_until = time.time() + 60.0
                while deferred and not every_real_bed_scored() and time.time() < wait_until:
                    time.sleep(0.2)
                for held in deferred:
                    send(held)
            producer.flush(timeout=60)
        finally:
            close_producer(producer)
        to_dead_letter = sum(1 for g in sent.values() for s in g if s.reasons and not s.failed)

        def real_scores() -> int:
            return sum(1 for bed, _ in list(listener.arrivals) if bed in real_beds)

        with tqdm(total=to_dead_letter, desc="dead letters", unit="msg", mininterval=0.5,
                  disable=not options.progress) as bar:
            deadline: float | None = None
            while True:
                bar.update(min(len(reader.letters), to_dead_letter) - bar.n)
                if len(reader.letters) >= to_dead_letter and real_scores() >= expected_windows:
                    break
                if not sim.alive():
                    if sim.proc.returncode != 0:
                        raise RuntimeError(f"simulator failed:\n{sim.tail()}")
                    deadline = deadline or time.time() + options.drain_s
                    if time.time() > deadline:
                        break
                if not worker.alive():
                    break
                time.sleep(0.2)
        wall_s = time.time() - t_start
        worker_alive = worker.alive()
        worker_rss_mb = _rss_mb(psutil, worker.pid) if worker_alive else None
        api_alive = next(c for c in stack.children if c.name == "api").alive()
        time.sleep(1.0)  # dead letters that were in flight
        reader.stop()
        listener.stop()
        scored = {k for k in listener.arrivals if k[0] in real_beds}
        in_db, incomplete = _scores_in_db(db_url, real_beds, len(scored))
    tracebacks = _count_in(run_dir / "worker.log", "Traceback")
    result: dict[str, Any] = {
        "messages": options.messages, "beds": options.beds, "duration_s": options.duration_s, "seed": options.seed,
        "speed": options.speed, "wall_s": round(wall_s, 1), "run_dir": str(run_dir),
        "sent_by_kind": {k: kinds_sent[k] for k in KINDS if kinds_sent[k]},
        "send_failed": sum(1 for g in sent.values() for s in g if s.failed),
        "to_dead_letter": to_dead_letter,
        "dead_letters_received": len(reader.letters),
        "dead_letters_by_reason": dict(Counter(r for r, _, _ in reader.letters).most_common()),
        "dead_letter_reader_error": repr(reader.error) if reader.error else None,
        **account(sent, reader.letters, topics.waveforms.name),
        "worker_alive": worker_alive, "worker_pid": worker_pid, "worker_rss_mb": worker_rss_mb,
        "worker_tracebacks": tracebacks, "api_alive": api_alive,
        "windows_expected": expected_windows, "windows_scored": len(scored), "windows_in_db": in_db,
        "windows_incomplete": incomplete,
    }
    seen = min(len(scored), in_db) if in_db is not None else len(scored)
    result["windows_lost"] = max(0, expected_windows - seen)
    result["ok"] = bool(
        result["missing"] == 0 and result["wrong_reason"] == 0 and not result["unexpected_dead_letters"]
        and result["send_failed"] == 0 and worker_alive and api_alive and result["windows_lost"] == 0
        and not incomplete and reader.error is None
    )
    print(format_result(result))
    if options.json_path:
        options.json_path.parent.mkdir(parents=True, exist_ok=True)
        options.json_path.write_text(json.dumps(result, indent=2))
        print(f"wrote {options.json_path}")
    return result


def _rss_mb(psutil: Any, pid: int) -> float | None:
    try:
        return round(psutil.Process(pid).memory_info().rss / 2**20, 1)
    except psutil.Error:
        return None


def _count_in(path: Path, needle: str) -> int:
    try:
        return path.read_text(errors="replace").count(needle)
    except OSError:
        return 0


def _scores_in_db(url: str, beds: Sequence[str], at_least: int,
                  timeout_s: float = 10.0) -> tuple[int | None, int | None]:
    """Windows of ``beds`` in the API's database, and how many of them are incomplete (a hostile chunk that
    reached a real bed would show as a gap), waiting up to ``timeout_s`` for ``at_least`` (writes are batched)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        deadline = time.time() + timeout_s
        while True:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT bed_id, window_end_s, complete FROM scores")).all()
            windows = {(r.bed_id, round(r.window_end_s, 3)): bool(r.complete) for r in rows if r.bed_id in beds}
            if len(windows) >= at_least or time.time() > deadline:
                return len(windows), sum(not complete for complete in windows.values())
            time.sleep(0.3)
    except sa.exc.SQLAlchemyError as exc:
        log.warning("could not count scores in %s: %s", url, exc)
        return None, None
    finally:
        engine.dispose()


def format_result(r: dict[str, Any]) -> str:
    """The printed summary: one row per kind, then the checks."""
    lines = [
        f"\nfuzz: {r['messages']} hostile messages, {r['beds']} beds x {r['duration_s']:.0f} s (speed {r['speed']}, "
        f"seed {r['seed']}, {r['wall_s']} s)",
        f"  {'kind':<14}{'sent':>7}{'dead-lettered':>15}{'accepted':>10}{'missing':>9}{'wrong reason':>14}  reasons",
    ]
    for kind, row in r["by_kind"].items():
        reasons = ", ".join(f"{k} {v}" for k, v in row["reasons"].items()) or "-"
        lines.append(f"  {kind:<14}{row['sent']:>7}{row['dead_lettered']:>15}{row['accepted_as_expected']:>10}"
                     f"{row['missing']:>9}{row['wrong_reason']:>14}  {reasons}")
    total = {k: sum(row[k] for row in r["by_kind"].values())
             for k in ("sent", "dead_lettered", "accepted_as_expected", "missing", "wrong_reason")}
    lines += [
        f"  {'total':<14}{total['sent']:>7}{total['dead_lettered']:>15}{total['accepted_as_expected']:>10}"
        f"{total['missing']:>9}{total['wrong_reason']:>14}",
        f"  dead letters by reason: {r['dead_letters_by_reason']}",
        f"  unexpected dead letters: {r['unexpected_dead_letters'] or 0}; not delivered to the broker: "
        f"{r['send_failed']}",
        f"  worker alive: {'yes' if r['worker_alive'] else 'NO'} (pid {r['worker_pid']}, rss {r['worker_rss_mb']} MB, "
        f"tracebacks in its log: {r['worker_tracebacks']}); api alive: {'yes' if r['api_alive'] else 'NO'}",
        f"  valid windows: expected {r['windows_expected']}, scored {r['windows_scored']} (WebSocket), "
        f"{r['windows_in_db']} in the database ({r['windows_incomplete']} incomplete), lost {r['windows_lost']}",
        f"  verdict: {'PASS' if r['ok'] else 'FAIL'}",
    ]
    return "\n".join(lines)

