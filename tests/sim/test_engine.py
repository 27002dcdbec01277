"""The simulator's I/O-free parts: mixes, id spellings, settings parsers and the per-submit decisions."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from catalyst_smpp.protocol.constants import CommandStatus, MessageState
from catalyst_smpp.sim.config import (
    DelayRange,
    SimConfig,
    parse_credentials,
    parse_delay,
    parse_state,
    parse_status,
)
from catalyst_smpp.sim.engine import Action, ConnectionFaults, SimEngine, receipt_wanted
from catalyst_smpp.sim.ids import IdForm, IdFormat, IdGenerator
from catalyst_smpp.sim.mix import Mix, MixError, parse_mix, percent_mix


def test_spread_mix_gives_exact_proportions_evenly_interleaved() -> None:
    mix = Mix.of([("a", 90), ("b", 5), ("c", 5)])
    picks = [mix.pick() for _ in range(200)]
    assert Counter(picks) == {"a": 180, "b": 10, "c": 10}
    # every block of 100 holds the exact shares, and the rare outcomes are not bunched together
    assert Counter(picks[:100]) == {"a": 90, "b": 5, "c": 5}
    positions = [i for i, p in enumerate(picks[:100]) if p == "b"]
    assert min(b - a for a, b in itertools.pairwise(positions)) >= 10


def test_random_mix_is_reproducible_and_roughly_proportional() -> None:
    mix_a = Mix.of([(1, 3), (2, 1)], random.Random(7))
    mix_b = Mix.of([(1, 3), (2, 1)], random.Random(7))
    seq_a = [mix_a.pick() for _ in range(4000)]
    assert seq_a == [mix_b.pick() for _ in range(4000)]
    assert 2800 < seq_a.count(1) < 3200


def test_parse_mix_and_percent_mix() -> None:
    entries = parse_mix("DELIVRD=90, UNDELIV=5,EXPIRED=5", parse_state)
    assert entries == [
        (MessageState.DELIVERED, 90.0),
        (MessageState.UNDELIVERABLE, 5.0),
        (MessageState.EXPIRED, 5.0),
    ]
    statuses = parse_mix("ESME_RSYSERR=2,0x45=1,MSGQFUL=1", parse_status)
    assert [s for s, _ in statuses] == [0x08, 0x45, 0x14]
    mix = percent_mix(statuses, 0)
    assert Counter(mix.pick() for _ in range(100)) == {0: 96, 0x08: 2, 0x45: 1, 0x14: 1}
    for bad in ("DELIVRD", "DELIVRD=x", "NOPE=1", "DELIVRD=1,DELIVRD=2", "", "DELIVRD=-1"):
        with pytest.raises(MixError):
            parse_mix(bad, parse_state)
    with pytest.raises(MixError):
        percent_mix([(8, 60.0), (20, 50.0)], 0)


def test_parsers() -> None:
    assert parse_delay("20") == DelayRange(0.02, 0.02)
    assert parse_delay("0.5s") == DelayRange(0.5, 0.5)
    assert parse_delay("5-50ms") == DelayRange(0.005, 0.05)
    assert parse_delay("1s-3s") == DelayRange(1.0, 3.0)
    with pytest.raises(ValueError):
        parse_delay("soon")
    with pytest.raises(ValueError):
        parse_delay("50-5ms")
    assert parse_status("ESME_RTHROTTLED") == parse_status("throttled") == parse_status("0x58") == 0x58
    with pytest.raises(ValueError):
        parse_status("ESME_RNOPE")
    assert parse_state("DELIVERED") is parse_state("delivrd") is MessageState.DELIVERED
    assert parse_credentials(["alice:secret", "bob:"]) == {"alice": "secret", "bob": ""}
    with pytest.raises(ValueError):
        parse_credentials(["alice"])


def test_id_spellings() -> None:
    assert IdFormat().format(255) == "ff"
    assert IdFormat(IdForm.HEX, width=8, upper=True).format(255) == "000000FF"
    assert IdFormat(IdForm.DEC, width=6).format(255) == "000255"
    gen = IdGenerator(IdFormat(IdForm.HEX, upper=True), IdFormat(IdForm.DEC, width=10), start=0xAB)
    n = gen.next_number()
    assert (gen.resp_id(n), gen.receipt_id(n)) == ("AB", "0000000171")
    same = IdGenerator(IdFormat(IdForm.DEC))
    n = same.next_number()
    assert same.resp_id(n) == same.receipt_id(n) == "1"


def test_receipt_wanted_follows_registered_delivery() -> None:
    ok, bad = MessageState.DELIVERED, MessageState.UNDELIVERABLE
    assert [receipt_wanted(0, ok), receipt_wanted(1, ok), receipt_wanted(1, bad)] == [False, True, True]
    assert [receipt_wanted(2, ok), receipt_wanted(2, bad)] == [False, True]
    assert [receipt_wanted(3, ok), receipt_wanted(3, bad)] == [True, False]
    assert receipt_wanted(0x11, ok)  # SME acknowledgement bits do not matter


def test_engine_fault_order_and_exact_counts() -> None:
    cfg = SimConfig(
        throttle_fraction=0.1,
        status_mix=((int(CommandStatus.ESME_RSYSERR), 10.0),),
        receipt_mix=((MessageState.DELIVERED, 3), (MessageState.EXPIRED, 1)),
        drop_after=1000,
    )
    engine = SimEngine(cfg)
    conn = ConnectionFaults()
    verdicts = [engine.on_submit(conn, now=0.0, registered_delivery=1) for _ in range(1000)]
    for v in verdicts:
        engine.record(v)
    actions = Counter(v.action for v in verdicts)
    # the 1000th submit drops the connection; of the 999 before, 10 % throttled, then 10 % of the rest errors
    assert actions[Action.DROP] == 1 and verdicts[-1].action is Action.DROP
    assert engine.stats.throttled == 100  # picks 6, 16, ... 996 of the spread 1-in-10 throttle mix
    assert engine.stats.errors == {"ESME_RSYSERR": 90}  # 10 % of the 899 not throttled, spread
    assert engine.stats.accepted == 809
    accepted = [v for v in verdicts if v.action is Action.ACCEPT]
    assert len(accepted) == engine.stats.accepted
    assert all(v.receipt_due_in == 0.0 for v in accepted)
    states = Counter(v.state for v in accepted)
    assert states == {MessageState.DELIVERED: 607, MessageState.EXPIRED: 202}
    # ids are consecutive and unique
    assert [v.message_id for v in accepted[:3]] == ["1", "2", "3"]


def test_engine_rate_throttle_uses_caller_clock() -> None:
    engine = SimEngine(SimConfig(throttle_rate=10, throttle_burst=5))
    conn = ConnectionFaults()
    first = [engine.on_submit(conn, now=0.0) for _ in range(7)]
    assert [v.action for v in first] == [Action.ACCEPT] * 5 + [Action.REJECT] * 2
    assert engine.on_submit(conn, now=0.1).action is Action.ACCEPT
    for v in first:
        engine.record(v)
    assert engine.stats.throttled == 2 and engine.stats.accepted == 5


def test_engine_credentials() -> None:
    engine = SimEngine(SimConfig(credentials={"alice": "pw"}))
    assert engine.check_bind("alice", "pw") == 0
    assert engine.check_bind("alice", "nope") == CommandStatus.ESME_RINVPASWD
    assert engine.check_bind("mallory", "pw") == CommandStatus.ESME_RINVSYSID
    assert (engine.stats.binds, engine.stats.bind_failures) == (1, 2)
    assert SimEngine(SimConfig()).check_bind("anyone", "anything") == 0


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        SimConfig(throttle_fraction=1.5)
    with pytest.raises(ValueError):
        SimConfig(status_mix=((0, 5.0),))
    with pytest.raises(ValueError):
        SimConfig(drop_after=0)
