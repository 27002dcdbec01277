"""Settings of the load generator."""

from __future__ import annotations

import enum

import attrs

from catalyst_smpp.encoding.msgid import IdRule

__all__ = ["BindMode", "LoadConfig", "TextEncoding", "make_text"]


class BindMode(enum.Enum):
    TRX = "trx"
    """One transceiver bind per connection: submits out, receipts and MO back on the same bind."""
    TX = "tx"
    """Transmitter binds only: no receipts come back."""


class TextEncoding(enum.Enum):
    AUTO = "auto"
    """GSM 03.38 when the text fits it, UCS-2 otherwise."""
    GSM = "gsm"
    UCS2 = "ucs2"
    LATIN1 = "latin1"


_FILLER_GSM = "The quick brown fox jumps over the lazy dog 0123456789. "
_FILLER_UCS2 = "Съешь же ещё этих мягких французских булок, да выпей чаю. "


def make_text(length: int, encoding: TextEncoding) -> str:
    """A readable text of ``length`` characters that needs ``encoding`` (Cyrillic for UCS-2)."""
    filler = _FILLER_UCS2 if encoding is TextEncoding.UCS2 else _FILLER_GSM
    reps = length // len(filler) + 1
    return (filler * reps)[:length]


@attrs.frozen(kw_only=True)
class LoadConfig:
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = "loadgen"
    password: str = "secret"
    system_type: str = ""
    bind_mode: BindMode = BindMode.TRX

    binds: int = 1
    window: int = 10
    rate: float | None = None
    """Messages per second over all binds; None: as fast as the windows allow."""
    count: int | None = None
    """Messages to send (a long message counts once); with neither count nor duration: 1000."""
    duration: float | None = None

    text: str = "Hello from catalyst-smpp load"
    encoding: TextEncoding = TextEncoding.AUTO
    source_addr: str = "CATALYST"
    source_ton: int = 5
    source_npi: int = 0
    dest_addr: str = "447700900000"
    dest_ton: int = 1
    dest_npi: int = 1
    dest_count: int = 1
    """Destinations used in turn: dest_addr, dest_addr+1, ... (numeric addresses)."""
    registered_delivery: int = 0
    use_payload: bool = False
    """Send long texts whole in message_payload instead of concatenated segments."""

    id_rule: IdRule = IdRule.AS_IS
    """How the receipt id is matched to the submit_sm_resp id (see catalyst_smpp.encoding.msgid)."""
    response_timeout: float = 30.0
    receipt_timeout: float = 10.0
    """After the last response, seconds to wait for outstanding receipts."""
    reconnect: bool = True
    reconnect_delay: float = 0.2
    bind_timeout: float = 10.0
    progress_interval: float = 0.5

    def __attrs_post_init__(self) -> None:
        if self.binds < 1:
            raise ValueError("binds must be >= 1")
        if self.window < 1:
            raise ValueError("window must be >= 1")
        if self.rate is not None and not self.rate > 0:
            raise ValueError("rate must be > 0")
        if self.count is not None and self.count < 0:
            raise ValueError("count must be >= 0")
        if self.duration is not None and not self.duration > 0:
            raise ValueError("duration must be > 0")
        if self.dest_count < 1:
            raise ValueError("dest_count must be >= 1")
        if not self.text:
            raise ValueError("text must not be empty")

    @property
    def message_limit(self) -> int | None:
        if self.count is None and self.duration is None:
            return 1000
        return self.count

    @property
    def wants_receipts(self) -> bool:
        return self.bind_mode is BindMode.TRX and (self.registered_delivery & 0x03) != 0
