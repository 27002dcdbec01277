"""An HTTP send as the submit_sm an SMPP partner would send for it (what the accept pipeline takes).

* ``to``: E.164 (``phonenumbers``: a known country code and a length its numbering plan allows), sent as
  TON 1 / NPI 1 without the ``+``;
* ``from``: ``+`` and digits or digits → TON 1 / NPI 1 (international), letters → alphanumeric (TON 5 /
  NPI 0, at most 11 characters, GSM 03.38 characters only);
* the text: ``encoding`` auto → GSM 03.38 default alphabet (data_coding 0; the API's data_coding 0 is
  always GSM whatever the partner's SMPP ``data_coding_0``) when every character is in it, else UCS-2
  (data_coding 8); or the encoding asked for (``gsm7``, ``ucs2``, ``latin1``: 3).  ``message_type``
  ``binary``: the message is hex, sent as 8-bit data (data_coding 4).  National language tables are not
  chosen here: SMPP has no way to say so without a UDH, and the operator connector re-encodes the text for
  its operator anyway, with the national tables that operator's text policy allows;
* up to 254 octets in ``short_message``, longer in the ``message_payload`` TLV (one message: the connector
  segments it for its operator, as it does an SMPP partner's long message_payload);
* ``delivery_report`` → registered_delivery 1; ``validity_period`` (seconds) → an SMPP relative time;
  ``priority`` → priority_flag.
"""

from __future__ import annotations

import functools
from typing import Final

import phonenumbers

from catalyst_smpp.billing.charging import billable_parts
from catalyst_smpp.encoding.codecs import UnencodableCharacterError, encode
from catalyst_smpp.encoding.datacoding import Alphabet, Encoding
from catalyst_smpp.protocol.pdu import SubmitSm
from catalyst_smpp.protocol.tlv import Tag, Tlv

__all__ = ["ComposeError", "compose", "e164", "relative_time", "source_address"]

_SHORT_MAX: Final = 254
_PAYLOAD: Final = int(Tag.message_payload)
_ALNUM_MAX: Final = 11


class ComposeError(ValueError):
    """A request the API refuses before the pipeline: ``code`` (INVALID_DESTINATION, INVALID_REQUEST) and
    ``details``."""

    def __init__(self, code: str, message: str, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details or {}


@functools.cache
def _possible_lengths(country_code: int) -> frozenset[int]:
    """The national number lengths the country code's plan allows (``phonenumbers`` metadata: its general
    lengths and those possible for local dialling, as ``is_possible_number`` counts them); empty for an
    unknown country code."""
    region = phonenumbers.region_code_for_country_code(country_code)
    if region == "ZZ":
        return frozenset()
    meta = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    if meta is None or meta.general_desc is None:
        return frozenset()
    desc = meta.general_desc
    return frozenset((desc.possible_length or ()) + (desc.possible_length_local_only or ()))


def _fast_possible(digits: str) -> bool | None:
    """True when ``digits`` (an E.164 number without ``+``) is a possible number; None when only a full parse
    can tell (a national part starting with 0, no country code found): ``phonenumbers.parse`` costs ~50 us,
    and a bulk of 10,000 numbers is answered within 2 s."""
    for n in (1, 2, 3):
        lengths = _possible_lengths(int(digits[:n]))
        if lengths:
            national = digits[n:]
            if not national or national[0] == "0":
                return None
            return len(national) in lengths
    return None


def e164(number: str) -> str:
    """``number`` as E.164 digits (no ``+``); ComposeError INVALID_DESTINATION when it is not a valid
    international number."""
    digits = number[1:]
    if number.startswith("+") and digits.isdigit() and digits.isascii() and 7 <= len(digits) <= 15:
        fast = _fast_possible(digits)
        if fast:
            return digits
    bad = ComposeError(
        "INVALID_DESTINATION",
        "the destination must be an international number in E.164 form (+ and the country code)",
        {"provided": number, "required_format": "E.164"},
    )
    if not number.startswith("+"):
        raise bad
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        raise bad from None
    # possible (a known country code, a length its plan allows), not "valid": the library's list of
    # allocated ranges lags behind operators, and a number it does not know yet must still be sent
    if not phonenumbers.is_possible_number(parsed):
        raise bad
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)[1:]


def source_address(sender: str) -> tuple[int, int, str]:
    """(TON, NPI, address) of ``from``; ComposeError INVALID_REQUEST when it is neither a number nor an
    alphanumeric sender of at most 11 GSM characters."""
    digits = sender[1:] if sender.startswith("+") else sender
    if digits.isdigit() and digits.isascii() and 1 <= len(digits) <= 20:
        return 1, 1, digits
    ok = 1 <= len(sender) <= _ALNUM_MAX and sender.isprintable()
    if ok:
        try:
            encode(sender, Encoding.GSM7)
        except UnencodableCharacterError:
            ok = False
    if not ok:
        raise ComposeError(
            "INVALID_REQUEST",
            "from must be a number, or an alphanumeric sender of at most 11 GSM 03.38 characters",
            {"provided": sender},
        )
    return 5, 0, sender


def relative_time(seconds: int) -> str:
    """An SMPP relative time ``YYMMDDhhmmss000R`` of ``seconds`` (days, hours, minutes, seconds; < 100
    days)."""
    days, rest = divmod(seconds, 86400)
    if not 0 <= days < 100:
        raise ValueError("a relative time of 100 days or more")
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"0000{days:02d}{hours:02d}{minutes:02d}{secs:02d}000R"


def _user_data(message: str, message_type: str, encoding: str) -> tuple[bytes, int, Alphabet]:
    if message_type == "binary":
        try:
            return bytes.fromhex(message), 4, Alphabet.BINARY
        except ValueError:
            raise ComposeError(
                "INVALID_REQUEST", "a binary message is hex digits", {"field": "message"}
            ) from None
    if encoding in ("auto", "gsm7"):
        try:
            return encode(message, Encoding.GSM7), 0, Alphabet.GSM7
        except UnencodableCharacterError as e:
            if encoding == "gsm7":
                raise ComposeError(
                    "INVALID_REQUEST",
                    f"character {e.char!r} at {e.position} is not in GSM 03.38",
                    {"field": "message", "position": e.position},
                ) from None
    if encoding == "latin1":
        try:
            return encode(message, Encoding.LATIN1), 3, Alphabet.LATIN1
        except UnencodableCharacterError as e:
            raise ComposeError(
                "INVALID_REQUEST",
                f"character {e.char!r} at {e.position} is not in Latin-1",
                {"field": "message", "position": e.position},
            ) from None
    return encode(message, Encoding.UCS2), 8, Alphabet.UCS2


def compose(
    to: str,
    sender: str,
    message: str,
    *,
    message_type: str = "text",
    encoding: str = "auto",
    delivery_report: bool = False,
    validity_period: int | None = None,
    priority: int = 0,
) -> tuple[SubmitSm, int]:
    """The submit_sm of one HTTP send and the number of SMS it takes (what it is priced for)."""
    dest = e164(to)
    ston, snpi, saddr = source_address(sender)
    data, dc, alphabet = _user_data(message, message_type, encoding)
    if not data:
        raise ComposeError("INVALID_REQUEST", "the message is empty", {"field": "message"})
    short, tlvs = (data, ()) if len(data) <= _SHORT_MAX else (b"", (Tlv.make(_PAYLOAD, data),))
    pdu = SubmitSm(
        source_addr_ton=ston,
        source_addr_npi=snpi,
        source_addr=saddr,
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr=dest,
        priority_flag=priority,
        validity_period=relative_time(validity_period) if validity_period else "",
        registered_delivery=1 if delivery_report else 0,
        data_coding=dc,
        short_message=short,
        tlvs=tlvs,
    )
    return pdu, billable_parts(len(data), alphabet)
