"""The windowed sender: requests pipelined over sessions' window slots, without a task per request.

One way to send for everyone who sends many requests: the operator connector (submit_sm on the client's
TX/TRX binds), partner delivery (deliver_sm on a partner's receivers) and ``SmppClient.request``.  Each send

1. takes a slot -- the caller's ``acquire`` waits for a session with a free window slot (and whatever else
   the caller needs first, e.g. a TPS token) and returns it, or raises :class:`NotBoundError` when there is
   none to wait for; :meth:`WindowedSender.take_slot` is the round robin over sessions with a free slot;
2. sends with ``session.send_request`` before the next checkpoint, so the slot is still free (a slot taken
   meanwhile, or a session closed before the request left, means acquiring again);
3. completes: ``on_done(result, sent_at)`` runs once, in the session's task, with the response (whatever its
   status) or the exception that ended the request, and when that attempt was sent.  A response the
   ``throttle`` policy answers with a delay (the peer asked us to slow down: ``SmppClient.throttle_retry``)
   is not completed: the same PDU is sent again after that delay, in a task of ``nursery``, until the policy
   says no more or ``deadline`` passes; a resend that cannot go (deadline, ``give_up()``, nothing bound)
   completes with that exception and ``sent_at`` None (never sent).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeAlias, TypeVar

import trio

from catalyst_smpp.protocol.pdu import Pdu
from catalyst_smpp.transport.errors import NotBoundError, SessionClosedError
from catalyst_smpp.transport.session import SmppSession

__all__ = ["Completion", "WindowedSender"]

S = TypeVar("S", bound=SmppSession)
Completion: TypeAlias = "Callable[[Pdu | BaseException, float | None], None]"
"""``on_done(result, sent_at)``: the response or the exception; when the attempt was sent (None: never)."""


class WindowedSender(Generic[S]):
    """Takes a slot, sends, completes, resends throttled requests; see the module notes."""

    __slots__ = ("_rr", "nursery", "throttle")

    def __init__(
        self,
        throttle: Callable[[S, int, int], float | None] | None = None,
        nursery: trio.Nursery | None = None,
    ) -> None:
        """``throttle(session, status, retries)``: the delay before sending a request answered with
        ``status`` again (after ``retries`` earlier resends), or None to complete with that answer.
        ``nursery``: where throttled requests wait for their resend (needed with a ``throttle``)."""
        self.throttle = throttle
        self.nursery = nursery
        self._rr = 0

    def take_slot(self, sessions: Sequence[S]) -> S | None:
        """The next of ``sessions`` (round robin) that can send now (a free window slot, send-buffer room,
        not closing), or None when none can."""
        n = len(sessions)
        start = self._rr
        for k in range(n):
            s = sessions[(start + k) % n]
            if s._sendable():  # a window slot and send-buffer room: send_request will not refuse
                self._rr = (start + k + 1) % n
                return s
        return None

    async def send(
        self,
        pdu: Pdu,
        on_done: Completion,
        acquire: Callable[[], Awaitable[S]],
        *,
        deadline: float = math.inf,
        give_up: Callable[[], bool] | None = None,
        retries: int = 0,
    ) -> BaseException | None:
        """Send ``pdu`` on the session ``acquire`` gives; None once sent (``on_done`` follows), else the
        exception that kept it from being sent (``on_done`` is not called then)."""
        while True:
            try:
                session = await acquire()
            except NotBoundError as exc:
                return exc
            sent_at = trio.current_time()
            try:
                session.send_request(pdu, self._completion(pdu, on_done, acquire, session, sent_at,
                                                           deadline, give_up, retries))  # fmt: skip
            except (trio.WouldBlock, SessionClosedError):
                continue  # the slot went meanwhile, or the session closed before sending: another one
            except Exception as exc:  # not sendable
                return exc
            return None

    def _completion(
        self,
        pdu: Pdu,
        on_done: Completion,
        acquire: Callable[[], Awaitable[S]],
        session: S,
        sent_at: float,
        deadline: float,
        give_up: Callable[[], bool] | None,
        retries: int,
    ) -> Callable[[Pdu | BaseException], None]:
        throttle = self.throttle

        def done(result: Pdu | BaseException) -> None:
            if throttle is not None and isinstance(result, Pdu) and result.command_status:
                delay = throttle(session, result.command_status, retries)
                if delay is not None:
                    assert self.nursery is not None, "a throttle needs a nursery for the resends"
                    self.nursery.start_soon(
                        self._resend, pdu, on_done, acquire, deadline, give_up, retries + 1, delay
                    )
                    return
            on_done(result, sent_at)

        return done

    async def _resend(
        self,
        pdu: Pdu,
        on_done: Completion,
        acquire: Callable[[], Awaitable[S]],
        deadline: float,
        give_up: Callable[[], bool] | None,
        retries: int,
        delay: float,
    ) -> None:
        """A throttled request, again after ``delay`` (before ``deadline``)."""
        err: BaseException | None = trio.TooSlowError()
        try:
            with trio.move_on_at(deadline):
                await trio.sleep(delay)
                if give_up is not None and give_up():
                    return
                err = await self.send(
                    pdu, on_done, acquire, deadline=deadline, give_up=give_up, retries=retries
                )
        finally:
            if err is not None:
                on_done(err, None)

    async def request(self, pdu: Pdu, acquire: Callable[[], Awaitable[S]]) -> Pdu:
        """Send ``pdu`` and wait for its final response (throttle answers resent as above); raises what
        ended it otherwise."""
        box: list[Pdu | BaseException] = []
        answered = trio.Event()

        def on_done(result: Pdu | BaseException, _sent_at: float | None) -> None:
            box.append(result)
            answered.set()

        async with trio.open_nursery() as nursery:
            # throttled resends wait here (this sender's own nursery may belong to someone else)
            sender: WindowedSender[S] = WindowedSender(self.throttle, nursery)
            err = await sender.send(pdu, on_done, acquire)
            if err is not None:
                raise err
            await answered.wait()
        result = box[0]
        if isinstance(result, BaseException):
            raise result
        return result
