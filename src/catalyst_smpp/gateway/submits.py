"""Building the submit_sm PDUs of an MT message for one operator (the operator connector's first step).

Text is re-encoded and re-segmented for the operator (what its data_coding 0 means, its segmentation
udh8/udh16/sar/payload, the connector's concatenation reference); binary or UDH/SAR messages are kept exactly
as the partner sent them.  Each part asks the operator for the receipt its ``receipt_request`` /
``receipt_parts`` say; the partner's own wish goes into the id mapping's flags (:func:`mapping_flags`).
"""

from __future__ import annotations

import re

from catalyst_smpp.encoding import (
    Alphabet,
    Encoding,
    SegmentMethod,
    TextPolicy,
    UnencodableCharacterError,
    decode_short_message,
    encoding_for,
    parse_data_coding,
    segment,
)
from catalyst_smpp.gateway.inbound import PART_DECIDES, PART_UNASKED
from catalyst_smpp.gateway.messages import CHARGE_ON_DELIVERY, MT, MtFields, MtMessage
from catalyst_smpp.protocol.pdu import SubmitSm
from catalyst_smpp.protocol.tlv import Tag, Tlv
from catalyst_smpp.store import Operator

__all__ = ["build_submits", "mapping_flags", "operator_alphabet"]

UDHI = 0x40
_SAR_TAGS = frozenset({int(Tag.sar_msg_ref_num), int(Tag.sar_total_segments), int(Tag.sar_segment_seqnum)})
_PAYLOAD_TAG = int(Tag.message_payload)
_PLAIN_GSM = re.compile(rb"[\x00-\x1a\x1c-\x7f]*")  # GSM 7-bit octets, no escape (extension table)
_ALPHABETS = {"gsm7": Alphabet.GSM7, "latin1": Alphabet.LATIN1, "ascii": Alphabet.IA5}
_METHODS = {
    "udh8": SegmentMethod.UDH8,
    "udh16": SegmentMethod.UDH16,
    "sar": SegmentMethod.SAR,
    "payload": SegmentMethod.PAYLOAD,
}


_PARTNER_FLAGS = 0x1F
"""The partner's registered_delivery bits an id mapping keeps (SMSC receipt, SME acks, intermediate)."""
_SMSC_RECEIPT = 0x03  # registered_delivery bits 0-1: SMSC delivery receipt (0 none, 1 final, 2 failures)
_INTERMEDIATE = 0x10  # bit 4: intermediate notification


def _asked_reg(registered_delivery: int, operator: Operator, charge_on: int = 0) -> int:
    """registered_delivery of a part that asks this operator for a receipt.

    ``receipt_request = "final"``: a receipt in every final state (1), whatever the partner asked, so
    the message log learns the final state.  ``"as_partner"``: what the partner asked (0 none, 1 every
    final state, 2 failures only; 3, reserved in SMPP 3.4 and "success only" in 5.0, is sent as 1, the
    way :func:`~catalyst_smpp.gateway.inbound.wants_receipt` reads it).  The other bits (SME acks,
    intermediate notification) are the partner's either way.  A message charged on delivery
    (``charge_on``) always asks for the final receipt: its price is captured or released by it.
    """
    if operator.receipt_request == "as_partner" and charge_on != CHARGE_ON_DELIVERY:
        wish = registered_delivery & _SMSC_RECEIPT
        return (registered_delivery & ~_SMSC_RECEIPT) | (1 if wish == 3 else wish)
    return (registered_delivery & ~_SMSC_RECEIPT) | 1


def mapping_flags(registered_delivery: int, part: int, parts: int, last_only: bool) -> int:
    """The ``flags`` of the id mapping of part ``part`` (1-based) of ``parts``: the partner's
    registered_delivery (what it gets, :func:`~catalyst_smpp.gateway.inbound.wants_receipt`), and, when
    only the last part asked the operator for a receipt (``last_only``), which part decides
    (:data:`~catalyst_smpp.gateway.inbound.PART_DECIDES` / ``PART_UNASKED``)."""
    flags = registered_delivery & _PARTNER_FLAGS
    if last_only and parts > 1:
        flags |= PART_DECIDES if part == parts else PART_UNASKED
    return flags


def operator_alphabet(name: str) -> Alphabet:
    """``Operator.data_coding_0`` / ``Partner.data_coding_0`` → the alphabet data_coding 0 means."""
    return _ALPHABETS[name]


def _as_sent(mt: MtFields, registered_delivery: int) -> list[SubmitSm]:
    payload = mt.payload
    tlvs = list(Tlv(t, raw) for t, raw in mt.tlvs)
    short = payload
    if len(payload) > 254 and not any(t.tag == _PAYLOAD_TAG for t in tlvs):
        tlvs.append(Tlv(_PAYLOAD_TAG, payload))
        short = b""
    return [_submit(mt, short, mt.data_coding, mt.esm_class, registered_delivery, tuple(tlvs))]


def _submit(
    mt: MtFields,
    short: bytes,
    data_coding: int,
    esm_class: int,
    registered_delivery: int,
    tlvs: tuple[Tlv, ...],
) -> SubmitSm:
    return SubmitSm(
        service_type=mt.service_type,
        source_addr_ton=mt.source_ton,
        source_addr_npi=mt.source_npi,
        source_addr=mt.source_addr,
        dest_addr_ton=mt.dest_ton,
        dest_addr_npi=mt.dest_npi,
        destination_addr=mt.dest_addr,
        esm_class=esm_class,
        protocol_id=mt.protocol_id,
        priority_flag=mt.priority_flag,
        schedule_delivery_time=mt.schedule_delivery_time,
        validity_period=mt.validity_period,
        registered_delivery=registered_delivery,
        data_coding=data_coding,
        short_message=short,
        tlvs=tlvs,
    )


def build_submits(mt: MtMessage, operator: Operator, ref: int) -> list[SubmitSm]:
    """The submit_sm PDUs for one MT message at ``operator`` (see the module notes).

    Text is decoded with what data_coding 0 meant for the partner and re-encoded in the same alphabet
    (GSM 7-bit, Latin-1, ASCII, UCS-2) for what it means at the operator; GSM text for an operator
    whose data_coding 0 is not GSM gets the cheapest encoding that operator can take (Latin-1 / ASCII
    as its default, else UCS-2).  ``ref`` is the concatenation reference (taken modulo 256 for udh8).
    The receipt each part asks for follows the operator's ``receipt_request`` (:func:`_asked_reg`) on
    every part, or with ``receipt_parts = "last"`` on the last part only, the others asking for none
    (no SMSC receipt, no intermediate notification); the partner's own wish is kept in the KV mapping's
    flags (:func:`mapping_flags`).  Raises ``UnencodableCharacterError`` / ``SegmentationError`` for
    text the operator cannot take (a permanent failure).
    """
    return _build_submits(MT.view_of(mt), operator, ref)


def _build_submits(mt: MtFields, operator: Operator, ref: int) -> list[SubmitSm]:
    """:func:`build_submits` of a record read as :class:`MtFields` (the connector's own path)."""
    reg = _asked_reg(mt.registered_delivery, operator, mt.charge_on)
    udhi = bool(mt.esm_class & UDHI)
    mt_tlvs = mt.tlvs  # most messages have none: no generator over them then
    has_sar = bool(mt_tlvs) and any(t in _SAR_TAGS for t, _ in mt_tlvs)
    payload = mt.payload
    if (
        mt.data_coding == 0
        and not udhi
        and 0 < len(payload) <= 160
        and mt.partner_dc0 == "gsm7"
        and operator.data_coding_0 == "gsm7"
        and _PLAIN_GSM.fullmatch(payload) is not None
        and not (mt_tlvs and any(t == _PAYLOAD_TAG or t in _SAR_TAGS for t, _ in mt_tlvs))
    ):
        # fast path: one GSM 7-bit part, same meaning of data_coding 0 on both sides -- the partner's
        # octets are already what the operator needs (what decoding and re-encoding would give)
        tlvs = tuple(Tlv(t, raw) for t, raw in mt_tlvs) if mt_tlvs else ()
        return [_submit(mt, payload, 0, mt.esm_class, reg, tlvs)]
    payload = mt.payload
    payload_tlv = next((raw for t, raw in mt.tlvs if t == _PAYLOAD_TAG), None)
    if payload_tlv is not None and not payload:
        payload = payload_tlv
    partner_alpha = _ALPHABETS.get(mt.partner_dc0, Alphabet.GSM7)
    try:
        dc = parse_data_coding(mt.data_coding, partner_alpha)
    except ValueError:
        return _as_sent(mt, reg)
    if udhi or has_sar or not dc.is_text:
        return _as_sent(mt, reg)
    enc = encoding_for(dc.alphabet)
    if enc is None or enc is Encoding.BINARY:
        return _as_sent(mt, reg)
    decoded = decode_short_message(payload, mt.data_coding, default_alphabet=partner_alpha)
    if decoded.text is None:
        return _as_sent(mt, reg)
    text = decoded.text
    op_alpha = operator_alphabet(operator.data_coding_0)
    method = _METHODS[operator.segmentation]
    policy = TextPolicy(default_alphabet=op_alpha, segment_method=method)
    ref = ref % 256 if method is SegmentMethod.UDH8 else ref % 65536
    seg = None
    if not (enc.is_gsm and op_alpha is not Alphabet.GSM7):
        try:
            seg = segment(text, ref=ref, policy=policy, encoding=enc)
        except UnencodableCharacterError:
            seg = None
    if seg is None:
        seg = segment(text, ref=ref, policy=policy)
    # the dc's message class etc. are kept when the octet is in the general group and the coding matches
    keep_tlvs = tuple(Tlv(t, raw) for t, raw in mt.tlvs if t != _PAYLOAD_TAG and t not in _SAR_TAGS)
    esm = mt.esm_class & ~UDHI
    last = len(seg.parts) - 1
    unasked = mt.registered_delivery & ~(_SMSC_RECEIPT | _INTERMEDIATE)
    last_only = operator.receipt_parts == "last"
    out: list[SubmitSm] = []
    for k, part in enumerate(seg.parts):
        tlvs = keep_tlvs
        if seg.use_message_payload:
            tlvs = (*tlvs, Tlv(_PAYLOAD_TAG, part.short_message))
            short = b""
        else:
            short = part.short_message
            if part.sar_msg_ref_num is not None:
                tlvs = (
                    *tlvs,
                    Tlv.make(Tag.sar_msg_ref_num, part.sar_msg_ref_num),
                    Tlv.make(Tag.sar_total_segments, part.sar_total_segments or 0),
                    Tlv.make(Tag.sar_segment_seqnum, part.sar_segment_seqnum or 0),
                )
        part_reg = unasked if last_only and k < last else reg
        out.append(_submit(mt, short, part.data_coding, esm | part.esm_class, part_reg, tlvs))
    return out
