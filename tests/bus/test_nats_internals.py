"""The nats-py internals the bus uses are checked at import: a nats-py without one fails loudly, naming it."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from catalyst_smpp.bus import nats_internals


def test_installed_nats_py_has_every_part() -> None:
    assert nats_internals.check() == nats_internals.VERSION


@pytest.mark.parametrize("part", ["_process_pong", "_process_msg", "_send_command", "_flush_pending"])
def test_a_nats_py_without_a_part_fails_naming_it(monkeypatch: pytest.MonkeyPatch, part: str) -> None:
    # what a future nats-py that renamed the method would look like; before the check, guard_pongs switched
    # itself off silently and the fast path would have wrapped nothing
    monkeypatch.delattr(Client, part)
    with pytest.raises(
        nats_internals.NatsInternalsError, match=rf"Client\.{part}\(\).*checked with nats-py 2\.16"
    ):
        nats_internals.check()


def test_a_changed_process_msg_signature_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    async def process_msg(self: Client, sid: int, subject: bytes, reply: bytes, data: bytes) -> None:
        pass

    monkeypatch.setattr(Client, "_process_msg", process_msg)
    with pytest.raises(nats_internals.NatsInternalsError, match="_process_msg"):
        nats_internals.check()
