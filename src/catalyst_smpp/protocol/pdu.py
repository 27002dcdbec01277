"""The SMPP v3.4 PDU model: one mutable, slotted ``attrs`` class per command.

Fields are named as in the specification and declared in wire order after the
header fields ``sequence_number`` and ``command_status``; optional parameters
come last as ``tlvs``, a tuple of :class:`~catalyst_smpp.protocol.tlv.Tlv` in
wire order (unknown tags included).  ``command_length``, ``sm_length``,
``number_of_dests`` and ``no_unsuccess`` are derived on encode and never stored.
C-octet strings are ``str`` (ASCII / Latin-1); ``short_message`` is ``bytes``.

The classes run no validators: the codec validates against the field table in
:mod:`catalyst_smpp.protocol.fields` (and constructing a PDU stays cheap).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Final

import attrs

from catalyst_smpp.protocol.constants import CommandId
from catalyst_smpp.protocol.errors import LocalProtocolError
from catalyst_smpp.protocol.tlv import Tlv, TlvValue

__all__ = [
    "PDU_CLASSES",
    "AlertNotification",
    "BindReceiver",
    "BindReceiverResp",
    "BindTransceiver",
    "BindTransceiverResp",
    "BindTransmitter",
    "BindTransmitterResp",
    "CancelSm",
    "CancelSmResp",
    "DataSm",
    "DataSmResp",
    "DeliverSm",
    "DeliverSmResp",
    "DistributionListDestination",
    "EnquireLink",
    "EnquireLinkResp",
    "GenericNack",
    "Outbind",
    "Pdu",
    "QuerySm",
    "QuerySmResp",
    "ReplaceSm",
    "ReplaceSmResp",
    "SmeDestination",
    "SubmitMulti",
    "SubmitMultiResp",
    "SubmitSm",
    "SubmitSmResp",
    "Unbind",
    "UnbindResp",
    "UnsuccessSme",
    "pdu_class",
    "request_class",
    "response_class",
]


@attrs.frozen
class SmeDestination:
    """A submit_multi destination with dest_flag 1 (an SME address)."""

    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""


@attrs.frozen
class DistributionListDestination:
    """A submit_multi destination with dest_flag 2 (a distribution list name)."""

    dl_name: str = ""


@attrs.frozen
class UnsuccessSme:
    """One entry of submit_multi_resp's unsuccess_sme list."""

    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    error_status_code: int = 0


@attrs.define(slots=True)
class Pdu:
    """Base of every PDU class: the header fields the instance carries."""

    command_id: ClassVar[CommandId]
    sequence_number: int = 0
    command_status: int = 0

    if TYPE_CHECKING:  # every concrete class declares ``tlvs`` as its last field
        tlvs: tuple[Tlv, ...]

    def get_tlv(self, tag: int) -> TlvValue | None:
        """The typed value of the first TLV with ``tag``, or ``None``."""
        for t in self.tlvs:
            if t.tag == tag:
                return t.value
        return None

    def get_tlvs(self, tag: int) -> list[Tlv]:
        """Every TLV with ``tag``, in wire order."""
        return [t for t in self.tlvs if t.tag == tag]

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & 0x80000000)

    def make_response(self, command_status: int = 0, **fields: Any) -> Pdu:
        """The matching ``*_resp`` with this request's sequence_number."""
        cls = _RESPONSE.get(self.command_id)
        if cls is None:
            raise LocalProtocolError(f"{self.command_id.name} has no response")
        if fields:
            return cls(sequence_number=self.sequence_number, command_status=command_status, **fields)
        # positional: a keyword call of an attrs class builds and unpacks a kwargs dict (~400 ns)
        return cls(self.sequence_number, command_status)


@attrs.define(slots=True)
class GenericNack(Pdu):
    """generic_nack (0x80000000)."""

    command_id: ClassVar[CommandId] = CommandId.generic_nack
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class BindReceiver(Pdu):
    """bind_receiver (0x00000001)."""

    command_id: ClassVar[CommandId] = CommandId.bind_receiver
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class BindReceiverResp(Pdu):
    """bind_receiver_resp (0x80000001)."""

    command_id: ClassVar[CommandId] = CommandId.bind_receiver_resp
    system_id: str = ""
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class BindTransmitter(Pdu):
    """bind_transmitter (0x00000002)."""

    command_id: ClassVar[CommandId] = CommandId.bind_transmitter
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class BindTransmitterResp(Pdu):
    """bind_transmitter_resp (0x80000002)."""

    command_id: ClassVar[CommandId] = CommandId.bind_transmitter_resp
    system_id: str = ""
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class QuerySm(Pdu):
    """query_sm (0x00000003)."""

    command_id: ClassVar[CommandId] = CommandId.query_sm
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class QuerySmResp(Pdu):
    """query_sm_resp (0x80000003)."""

    command_id: ClassVar[CommandId] = CommandId.query_sm_resp
    message_id: str = ""
    final_date: str = ""
    message_state: int = 0
    error_code: int = 0
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class SubmitSm(Pdu):
    """submit_sm (0x00000004)."""

    command_id: ClassVar[CommandId] = CommandId.submit_sm
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class SubmitSmResp(Pdu):
    """submit_sm_resp (0x80000004)."""

    command_id: ClassVar[CommandId] = CommandId.submit_sm_resp
    message_id: str = ""
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class DeliverSm(Pdu):
    """deliver_sm (0x00000005)."""

    command_id: ClassVar[CommandId] = CommandId.deliver_sm
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class DeliverSmResp(Pdu):
    """deliver_sm_resp (0x80000005)."""

    command_id: ClassVar[CommandId] = CommandId.deliver_sm_resp
    message_id: str = ""
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class Unbind(Pdu):
    """unbind (0x00000006)."""

    command_id: ClassVar[CommandId] = CommandId.unbind
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class UnbindResp(Pdu):
    """unbind_resp (0x80000006)."""

    command_id: ClassVar[CommandId] = CommandId.unbind_resp
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class ReplaceSm(Pdu):
    """replace_sm (0x00000007)."""

    command_id: ClassVar[CommandId] = CommandId.replace_sm
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class ReplaceSmResp(Pdu):
    """replace_sm_resp (0x80000007)."""

    command_id: ClassVar[CommandId] = CommandId.replace_sm_resp
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class CancelSm(Pdu):
    """cancel_sm (0x00000008)."""

    command_id: ClassVar[CommandId] = CommandId.cancel_sm
    service_type: str = ""
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class CancelSmResp(Pdu):
    """cancel_sm_resp (0x80000008)."""

    command_id: ClassVar[CommandId] = CommandId.cancel_sm_resp
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class BindTransceiver(Pdu):
    """bind_transceiver (0x00000009)."""

    command_id: ClassVar[CommandId] = CommandId.bind_transceiver
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class BindTransceiverResp(Pdu):
    """bind_transceiver_resp (0x80000009)."""

    command_id: ClassVar[CommandId] = CommandId.bind_transceiver_resp
    system_id: str = ""
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class Outbind(Pdu):
    """outbind (0x0000000B)."""

    command_id: ClassVar[CommandId] = CommandId.outbind
    system_id: str = ""
    password: str = ""
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class EnquireLink(Pdu):
    """enquire_link (0x00000015)."""

    command_id: ClassVar[CommandId] = CommandId.enquire_link
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class EnquireLinkResp(Pdu):
    """enquire_link_resp (0x80000015)."""

    command_id: ClassVar[CommandId] = CommandId.enquire_link_resp
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class SubmitMulti(Pdu):
    """submit_multi (0x00000021)."""

    command_id: ClassVar[CommandId] = CommandId.submit_multi
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_address: tuple[SmeDestination | DistributionListDestination, ...] = ()
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class SubmitMultiResp(Pdu):
    """submit_multi_resp (0x80000021)."""

    command_id: ClassVar[CommandId] = CommandId.submit_multi_resp
    message_id: str = ""
    unsuccess_sme: tuple[UnsuccessSme, ...] = ()
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class AlertNotification(Pdu):
    """alert_notification (0x00000102)."""

    command_id: ClassVar[CommandId] = CommandId.alert_notification
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    esme_addr_ton: int = 0
    esme_addr_npi: int = 0
    esme_addr: str = ""
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class DataSm(Pdu):
    """data_sm (0x00000103)."""

    command_id: ClassVar[CommandId] = CommandId.data_sm
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    registered_delivery: int = 0
    data_coding: int = 0
    tlvs: tuple[Tlv, ...] = ()


@attrs.define(slots=True)
class DataSmResp(Pdu):
    """data_sm_resp (0x80000103)."""

    command_id: ClassVar[CommandId] = CommandId.data_sm_resp
    message_id: str = ""
    tlvs: tuple[Tlv, ...] = ()


PDU_CLASSES: Final[dict[int, type[Pdu]]] = {
    int(c.command_id): c
    for c in (
        GenericNack,
        BindReceiver,
        BindReceiverResp,
        BindTransmitter,
        BindTransmitterResp,
        QuerySm,
        QuerySmResp,
        SubmitSm,
        SubmitSmResp,
        DeliverSm,
        DeliverSmResp,
        Unbind,
        UnbindResp,
        ReplaceSm,
        ReplaceSmResp,
        CancelSm,
        CancelSmResp,
        BindTransceiver,
        BindTransceiverResp,
        Outbind,
        EnquireLink,
        EnquireLinkResp,
        SubmitMulti,
        SubmitMultiResp,
        AlertNotification,
        DataSm,
        DataSmResp,
    )
}

# request command_id -> response class, and back; outbind and alert_notification have no
# response, generic_nack answers no particular request.
_RESPONSE: Final[dict[int, type[Pdu]]] = {
    cid: PDU_CLASSES[cid | 0x80000000]
    for cid in PDU_CLASSES
    if not cid & 0x80000000 and cid | 0x80000000 in PDU_CLASSES
}
_REQUEST: Final[dict[int, type[Pdu]]] = {
    int(cls.command_id): PDU_CLASSES[req] for req, cls in _RESPONSE.items()
}


def pdu_class(command_id: int) -> type[Pdu] | None:
    """The PDU class of ``command_id``, or ``None`` for a command SMPP v3.4 does not define."""
    return PDU_CLASSES.get(command_id)


def response_class(command_id: int) -> type[Pdu]:
    """The response class of a request command_id (``submit_sm`` -> :class:`SubmitSmResp`).

    Raises ``KeyError`` for commands without a response (outbind, alert_notification, responses).
    """
    return _RESPONSE[command_id]


def request_class(command_id: int) -> type[Pdu]:
    """The request class of a response command_id (``submit_sm_resp`` -> :class:`SubmitSm`).

    Raises ``KeyError`` for generic_nack and requests.
    """
    return _REQUEST[command_id]
