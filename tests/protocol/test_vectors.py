"""Hex vectors from tests/vectors/pdus.txt: valid PDUs round-trip, malformed ones earn their status."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from catalyst_smpp.protocol import decode, encode
from catalyst_smpp.protocol.codec import decode_pdu, encode_pdu
from catalyst_smpp.protocol.constants import CommandId, CommandStatus
from catalyst_smpp.protocol.errors import FramingError, PduDecodeError, ProtocolError, UnknownCommandError
from catalyst_smpp.protocol.pdu import pdu_class

VECTOR_FILE = Path(__file__).resolve().parents[1] / "vectors" / "pdus.txt"
_NAME_LINE = re.compile(r"^([A-Za-z0-9_]+): (\S+) status=(\S+)$")


def load_vectors(path: Path) -> list[tuple[str, str, str, bytes]]:
    vectors: list[tuple[str, str, str, bytes]] = []
    current: tuple[str, str, str] | None = None
    hexparts: list[str] = []

    def flush() -> None:
        nonlocal current, hexparts
        if current is not None:
            vectors.append((*current, bytes.fromhex("".join(hexparts))))
        current, hexparts = None, []

    for line in path.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            if not line.strip():
                flush()
            continue
        m = _NAME_LINE.match(text)
        if m:
            flush()
            current = (m.group(1), m.group(2), m.group(3))
        else:
            assert current is not None, f"hex outside a vector: {line!r}"
            hexparts.append(text.replace(" ", ""))
    flush()
    return vectors


VECTORS = load_vectors(VECTOR_FILE)
OK = [v for v in VECTORS if v[2] == "ok"]
NORMALISED = [v for v in VECTORS if v[2] == "ok-normalised"]
BAD = [v for v in VECTORS if not v[2].startswith("ok")]


def test_vector_file_covers_enough() -> None:
    names = [v[0] for v in VECTORS]
    assert len(names) == len(set(names)), "vector names must be unique"
    assert len(BAD) >= 25
    statuses = {v[2] for v in BAD}
    for needed in (
        "ESME_RINVSRCADR",
        "ESME_RINVDSTADR",
        "ESME_RINVSERTYP",
        "ESME_RINVSYSID",
        "ESME_RINVPASWD",
        "ESME_RINVSYSTYP",
        "ESME_RINVSCHED",
        "ESME_RINVEXPIRY",
        "ESME_RINVMSGID",
        "ESME_RINVESMCLASS",
        "ESME_RINVMSGLEN",
        "ESME_RINVOPTPARSTREAM",
        "ESME_RINVOPTPARAMVAL",
        "ESME_RINVCMDLEN",
        "ESME_RINVNUMDESTS",
        "ESME_RINVDESTFLAG",
        "ESME_RMISSINGOPTPARAM",
        "ESME_RINVCMDID",
    ):
        assert needed in statuses, needed
    # every command of v3.4 has at least one valid vector
    covered = {v[1] for v in OK}
    assert covered == {c.name for c in CommandId}


def _command_of(data: bytes) -> str:
    cid = struct.unpack_from(">I", data, 4)[0]
    try:
        return CommandId(cid).name
    except ValueError:
        return f"0x{cid:08X}"


@pytest.mark.parametrize(("name", "command", "status", "data"), OK, ids=[v[0] for v in OK])
def test_valid_vector_round_trips(name: str, command: str, status: str, data: bytes) -> None:
    assert _command_of(data) == command
    pdu = decode_pdu(data)
    assert type(pdu) is pdu_class(CommandId[command])
    assert encode_pdu(pdu) == data
    # the table-driven reference paths agree with whatever fast path was used
    length, cid, cstatus, seq = struct.unpack_from(">IIII", data)
    assert decode._decode_general(data, 0, length, cid, cstatus, seq) == pdu
    assert encode._encode_general(pdu) == data
    # the same PDU in the middle of a larger buffer, and from a bytearray / memoryview
    buf = b"\xff" * 7 + data + b"\x00" * 5
    assert decode_pdu(buf, 7) == pdu
    assert decode_pdu(bytearray(buf), 7) == pdu
    assert decode_pdu(memoryview(buf), 7) == pdu


@pytest.mark.parametrize(("name", "command", "status", "data"), NORMALISED, ids=[v[0] for v in NORMALISED])
def test_normalised_vector(name: str, command: str, status: str, data: bytes) -> None:
    pdu = decode_pdu(data)
    again = encode_pdu(pdu)
    assert again != data
    assert decode_pdu(again) == pdu


@pytest.mark.parametrize(("name", "command", "status", "data"), BAD, ids=[v[0] for v in BAD])
def test_malformed_vector_earns_its_status(name: str, command: str, status: str, data: bytes) -> None:
    assert _command_of(data) == command
    expected = CommandStatus[status]
    with pytest.raises(ProtocolError) as info:
        decode_pdu(data)
    err = info.value
    assert err.status == expected
    length, cid, _, seq = struct.unpack_from(">IIII", data)
    if isinstance(err, PduDecodeError):
        assert err.command_id == cid
        assert err.sequence_number == seq
        # the reference decoder refuses it for the same reason
        with pytest.raises(PduDecodeError) as ref:
            decode._decode_general(data, 0, length, cid, 0, seq)
        assert ref.value.status == expected
        assert ref.value.field == err.field
    elif isinstance(err, UnknownCommandError):
        assert err.command_id == cid and err.sequence_number == seq
    else:
        assert isinstance(err, FramingError)
    # same verdict when the PDU sits at an offset inside a bigger buffer (unless it is a framing
    # error about the data's end, which more data legitimately changes)
    if not isinstance(err, FramingError):
        with pytest.raises(ProtocolError) as shifted:
            decode_pdu(b"\x00" * 3 + data + b"\x00" * 300, 3)
        assert shifted.value.status == expected
