"""The fuzz command's hostile messages: every kind is made, each gets exactly the reason it declares from the
worker's own checks, and dead letters are matched back to the messages they carry."""

from __future__ import annotations

import base64
import json
from collections import Counter

import numpy as np
import pytest

from holmes.cli import build_parser
from holmes.fuzz import KINDS, HostileFactory, Sent, account, fingerprint, letter_fingerprint
from ingest.codec import MAX_MESSAGE_BYTES, decode_chunk
from ingest.errors import DecodeError
from ingest.schemas import WaveformChunk
from ingest.windowing import Windower
from ingest.worker import check_chunk, deadletter_record

BEDS = ("bed-001", "bed-002", "bed-003")
T0 = 1_700_000_000.0


class Worker:
    """The worker's own checks in its order: codec, chunk checks against its clock, then the windower, which
    has seen ``seconds`` of every real bed (as it has once every real bed was scored)."""

    def __init__(self, seconds: int = 20) -> None:
        self.windower = Windower(10.0, 5.0, 250.0)
        for bed in BEDS:
            for seq in range(seconds):
                self.windower.push(WaveformChunk(bed, seq, T0 - seconds + seq, 250.0, ("MLII", "V1"),
                                                 np.zeros((2, 250), np.int16), 200.0))

    def outcome(self, key: bytes | None, value: bytes | None) -> str:
        """``accepted`` or the dead-letter reason."""
        try:
            chunk = decode_chunk(value)  # type: ignore[arg-type]
            check_chunk(chunk, key, 250.0, now_s=T0, max_future_s=300.0)
            self.windower.push(chunk)
        except DecodeError as exc:
            return exc.reason
        return "accepted"


@pytest.mark.parametrize("seed", [0, 1])
def test_every_kind_is_made_and_gets_the_reason_it_declares(seed: int) -> None:
    factory = HostileFactory(seed, BEDS, T0)
    worker = Worker()
    kinds: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for i in range(1500):
        msg = factory.make(i)
        kinds[msg.kind] += 1
        got = worker.outcome(msg.key, msg.value)
        assert (got in msg.reasons) if msg.reasons else got == "accepted", (msg.kind, got, msg.reasons)
        reasons[got] += 1
        assert msg.key is not None or msg.kind == "null-key"
        assert len(msg.value or b"") <= MAX_MESSAGE_BYTES + 64 * 1024 + 1
    assert set(kinds) == set(KINDS)
    # every check of the codec and the worker is exercised
    assert {"bad-magic", "wrong-schema", "bad-seq", "bad-timestamp", "bad-gain", "bad-shape", "bad-lead-name",
            "trailing-bytes", "truncated", "oversized", "non-finite", "bad-rate", "wrong-rate", "key-mismatch",
            "bad-bed-id", "wrong-type", "null-key", "implausible-seq", "future-timestamp", "accepted"} <= set(reasons)
    # the real beds were not disturbed: nothing hostile reached their buffers
    assert all(worker.windower.beds[b].stats.accepted == 20 for b in BEDS)


def test_the_same_seed_makes_the_same_messages() -> None:
    a, b = HostileFactory(3, BEDS, 5.0), HostileFactory(3, BEDS, 5.0)
    for i in range(200):
        x, y = a.make(i), b.make(i)
        assert (x.kind, x.key, x.value) == (y.kind, y.key, y.value)


def test_dead_letters_are_matched_to_what_was_sent() -> None:
    factory = HostileFactory(0, BEDS, T0)
    messages = [factory.make(i) for i in range(300)]
    worker = Worker()
    sent: dict[tuple[str, int, str], list[Sent]] = {}
    for m in messages:
        sent.setdefault(fingerprint(m.key, m.value), []).append(Sent(m.kind, m.reasons))
    letters = []
    for offset, m in enumerate(messages):
        reason = worker.outcome(m.key, m.value)
        if reason == "accepted" or offset == 7:  # message 7 is lost on the way
            continue
        letter = json.loads(deadletter_record(reason, "detail", "t.waveforms", 0, offset, m.key, m.value))
        letters.append((letter["reason"], letter_fingerprint(letter), letter["topic"]))
    letters.append(("internal-error", ("", 3, "x"), "t.waveforms"))  # a letter for nothing that was sent
    result = account(sent, letters, "t.waveforms")
    lost = messages[7]
    assert result["missing"] == (1 if lost.reasons else 0)
    assert result["wrong_reason"] == 0
    assert result["unexpected_dead_letters"] == {"internal-error": 1}
    rows = result["by_kind"]
    assert sum(r["sent"] for r in rows.values()) == 300
    assert sum(r["dead_lettered"] + r["accepted_as_expected"] + r["missing"] for r in rows.values()) == 300


def test_keys_longer_than_a_dead_letter_keeps_still_match() -> None:
    key, value = b"k" * 600, b"\x00garbage"
    letter = json.loads(deadletter_record("truncated", "", "t", 0, 0, key, value))
    assert len(letter["key_b64"]) == 512 and base64.b64decode(letter["payload_b64"]) == value
    assert letter_fingerprint(letter) == fingerprint(key, value)


def test_fuzz_arguments() -> None:
    args = build_parser().parse_args(["fuzz", "--messages", "500", "--beds", "3", "--duration", "30", "--seed", "4"])
    assert (args.messages, args.beds, args.duration, args.seed, args.json) == (500, 3, 30.0, 4, None)
    assert args.fn.__name__ == "cmd_fuzz"
