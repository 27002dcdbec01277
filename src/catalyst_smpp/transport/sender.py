"""The windowed sender: requests pipelined over sessions' window slots, without a task per request.

One way to send for everyone who sends many requests: the operator connector (submit_sm on the client's
TX/TRX binds), partner delivery (deliver_sm on a partner's receivers) and ``SmppClient.request``.  Each send

1. takes a slot -- the caller's ``acquire()`` waits for a session with a free window slot (and whatever else
   the caller needs first, e.g. a TPS token) and returns it, or raises :class:`NotBoundError` when there is
   none to wait for; :meth:`WindowedSender.take_slot` is the round robin over sessions that can send;
2. sends with ``session.send_request`` before the next checkpoint, so the slot is still free (a slot taken
   meanwhile, or a session closed before the request left, means acquiring again);
3. completes: the sender's ``on_done(ctx, result, sent_at)`` runs once per send, in the session's task, with
   the caller's ``ctx`` for that request, the response (whatever its status) or the exception that ended the
   request, and when that attempt was sent.  A response the ``throttle`` policy answers with a delay (the
   peer asked us to slow down: ``SmppClient.throttle_retry``) is not completed: the same PDU is sent again
   after that delay, in a task of ``nursery``, until the policy says no more or ``deadline`` passes; a resend
   that cannot go (deadline, ``give_up(ctx)``, nothing bound) completes with that exception and ``sent_at``
   None (never sent).

A send costs one small object (:class:`_Attempt`) and no task: the gateway sends tens of thousands a second,
and every object with references it makes brings the next garbage collection nearer.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeAlias, TypeVar

import trio

from catalyst_smpp.protocol.pdu import Pdu
from catalyst_smpp.transport.errors import NotBoundError, SessionClosedError
from catalyst_smpp.transport.session import SmppSession

__all__ = ["Completion", "WindowedSender"]

S = TypeVar("S", bound=SmppSession)
Completion: TypeAlias = "Callable[[Any, Pdu | BaseException, float | None], None]"
"""``on_done(ctx, result, sent_at)``: the send's ``ctx``, the response or the exception, and when the attempt
was sent (None: never)."""
Acquire: TypeAlias = "Callable[[], Awaitable[S]]"


class WindowedSender(Generic[S]):
    """Takes a slot, sends, completes, resends throttled requests; see the module notes."""

    __slots__ = ("_rr", "give_up", "nursery", "on_done", "throttle")

    def __init__(
        self,
        on_done: Completion,
        throttle: Callable[[S, int, int], float | None] | None = None,
        nursery: trio.Nursery | None = None,
        give_up: Callable[[Any], bool] | None = None,
    ) -> None:
        """``throttle(session, status, retries)``: the delay before sending a request answered with
        ``status`` again (after ``retries`` earlier resends), or None to complete with that answer.
        ``nursery``: where throttled requests wait for their resend (needed with a ``throttle``).
        ``give_up(ctx)``: True when a throttled request is no longer wanted (checked before its resend)."""
        self.on_done = on_done
        self.throttle = throttle
        self.nursery = nursery
        self.give_up = give_up
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
        ctx: Any,
        acquire: Acquire[S],
        deadline: float = math.inf,
        retries: int = 0,
    ) -> BaseException | None:
        """Send ``pdu`` on the session ``acquire()`` gives; None once sent (``on_done`` follows), else the
        exception that kept it from being sent (``on_done`` is not called then)."""
        while True:
            try:
                session = await acquire()
            except NotBoundError as exc:
                return exc
            attempt = _Attempt(self, pdu, ctx, acquire, session, deadline, retries)
            try:
                session.send_request(pdu, attempt)
            except (trio.WouldBlock, SessionClosedError):
                continue  # the slot went meanwhile, or the session closed before sending: another one
            except Exception as exc:  # not sendable
                return exc
            return None

    async def _resend(self, a: _Attempt, delay: float) -> None:
        """A throttled request, again after ``delay`` (before its deadline)."""
        err: BaseException | None = trio.TooSlowError()
        try:
            with trio.move_on_at(a.deadline):
                await trio.sleep(delay)
                if self.give_up is not None and self.give_up(a.ctx):
                    return
                err = await self.send(a.pdu, a.ctx, a.acquire, a.deadline, a.retries + 1)
        finally:
            if err is not None:
                self.on_done(a.ctx, err, None)

    @staticmethod
    async def request(
        pdu: Pdu, acquire: Acquire[S], throttle: Callable[[S, int, int], float | None] | None = None
    ) -> Pdu:
        """Send ``pdu`` and wait for its final response (throttle answers resent as above); raises what
        ended it otherwise."""
        box: list[Pdu | BaseException] = []
        answered = trio.Event()

        def on_done(_ctx: Any, result: Pdu | BaseException, _sent_at: float | None) -> None:
            box.append(result)
            answered.set()

        async with trio.open_nursery() as nursery:  # throttled resends wait here
            sender: WindowedSender[S] = WindowedSender(on_done, throttle, nursery)
            err = await sender.send(pdu, None, acquire)
            if err is not None:
                raise err
            await answered.wait()
        result = box[0]
        if isinstance(result, BaseException):
            raise result
        return result


class _Attempt:
    """One request on the wire: the session's completion callback (one object per send, no closures)."""

    __slots__ = ("acquire", "ctx", "deadline", "pdu", "retries", "sender", "sent_at", "session")

    def __init__(
        self,
        sender: WindowedSender[Any],
        pdu: Pdu,
        ctx: Any,
        acquire: Acquire[Any],
        session: Any,
        deadline: float,
        retries: int,
    ) -> None:
        self.sender = sender
        self.pdu = pdu
        self.ctx = ctx
        self.acquire = acquire
        self.session = session
        self.deadline = deadline
        self.retries = retries
        self.sent_at = session._now()  # the run's clock (trio.current_time), one call less

    def __call__(self, result: Pdu | BaseException) -> None:
        sender = self.sender
        throttle = sender.throttle
        if throttle is not None and isinstance(result, Pdu) and result.command_status:
            delay = throttle(self.session, result.command_status, self.retries)
            if delay is not None:
                assert sender.nursery is not None, "a throttle needs a nursery for the resends"
                sender.nursery.start_soon(sender._resend, self, delay)
                return
        sender.on_done(self.ctx, result, self.sent_at)
