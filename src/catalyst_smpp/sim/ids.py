"""Message ids as an operator's SMSC spells them.

Operators give ids in hex or decimal, padded with leading zeros or not, in upper or
lower case, and sometimes spell the receipt's id differently from the
``submit_sm_resp`` one (hex in the response, decimal in the receipt).  The
simulator reproduces all of it so the gateway's id normalisation gets exercised.
"""

from __future__ import annotations

import enum

import attrs

__all__ = ["IdForm", "IdFormat", "IdGenerator"]


class IdForm(enum.Enum):
    HEX = "hex"
    DEC = "dec"


@attrs.frozen
class IdFormat:
    """How one number is written: ``form``, zero-padded to ``width`` digits, upper-case hex or not."""

    form: IdForm = IdForm.HEX
    width: int = 0
    upper: bool = False

    _spec: str = attrs.field(init=False, repr=False, eq=False, default="")
    """The format() spec of the whole spelling (zero padding included), made once."""

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.width <= 64:
            raise ValueError("id width must be within 0..64 (message_id is at most 65 octets)")
        kind = "d" if self.form is IdForm.DEC else ("X" if self.upper else "x")
        object.__setattr__(self, "_spec", f"0{self.width}{kind}" if self.width else kind)

    def format(self, number: int) -> str:
        if number < 0:
            raise ValueError("message id numbers are not negative")
        return format(number, self._spec)

    def parse(self, text: str) -> int:
        return int(text, 16 if self.form is IdForm.HEX else 10)


@attrs.define
class IdGenerator:
    """Consecutive ids from ``start``; the response and the receipt spelling of each."""

    resp_format: IdFormat = attrs.field(factory=IdFormat)
    receipt_format: IdFormat | None = None
    """None: the receipt carries the very string of the submit_sm_resp."""
    start: int = 1
    _next: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        if self.start < 0:
            raise ValueError("id start must be >= 0")
        self._next = self.start

    def next_number(self) -> int:
        number = self._next
        self._next += 1
        return number

    def resp_id(self, number: int) -> str:
        return self.resp_format.format(number)

    def receipt_id(self, number: int) -> str:
        fmt = self.receipt_format or self.resp_format
        return fmt.format(number)

    def ids(self, number: int) -> tuple[str, str]:
        """``(resp_id(number), receipt_id(number))``, the one string twice when they are spelt alike."""
        resp = self.resp_format.format(number)
        if self.receipt_format is None or self.receipt_format == self.resp_format:
            return resp, resp
        return resp, self.receipt_format.format(number)
