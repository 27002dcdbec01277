"""Encode and decode SMPP v3.4 PDUs (sans-IO).

``decode_pdu(data, offset)`` decodes the one PDU that starts at ``offset``.  For
any input bytes it returns a :class:`~catalyst_smpp.protocol.pdu.Pdu` or raises
a :class:`~catalyst_smpp.protocol.errors.ProtocolError`:

* :class:`FramingError` -- fewer than 16 octets, or a command_length below 16 or past
  the end of ``data``;
* :class:`UnknownCommandError` -- a command_id SMPP v3.4 does not define;
* :class:`PduDecodeError` -- a known command whose body is invalid; ``status`` is
  what the field table (:mod:`catalyst_smpp.protocol.fields`) says the bad field
  earns, ``command_id``/``sequence_number`` let the session answer with the
  command's own ``*_resp``.

Statuses for body problems: a body that ends inside a mandatory field ->
``ESME_RINVCMDLEN``; a C-octet string with no NUL within its maximum size, or a
time field that is neither empty nor 16 characters -> the field's own status
(``ESME_RINVSRCADR``, ``ESME_RINVSCHED``, ...); sm_length above 254 or past the
body -> ``ESME_RINVMSGLEN``; esm_class message-type bits not defined for the
command -> ``ESME_RINVESMCLASS`` (the messaging-mode bits are free);
number_of_dests 0 or above 254 -> ``ESME_RINVNUMDESTS``; dest_flag not 1/2 ->
``ESME_RINVDESTFLAG``; octets after the mandatory fields that are not whole TLVs
(a TLV header cut short, or a TLV length running past the body) ->
``ESME_RINVOPTPARSTREAM``; a known TLV with a length its spec does not allow or an
impossible value, or short_message and message_payload both set ->
``ESME_RINVOPTPARAMVAL``; a TLV the command requires that is absent (an incomplete
SAR set) -> ``ESME_RMISSINGOPTPARAM``.

Responses with an empty body: any ``*_resp`` may arrive with no body at all (the
v3.4 spec omits the body of an error submit_sm_resp; many peers do the same for
other responses, and some send an OK deliver_sm_resp without its NUL); it decodes
to the class defaults.  On encode, a response with a non-zero command_status
whose body would be all defaults (and no TLVs) is sent header-only, as v3.4
section 4.4.2 prescribes for submit_sm_resp; an OK response always carries its
body.  These two normalisations are the only inputs for which
``encode_pdu(decode_pdu(b)) != b``.

``encode_pdu`` checks what would corrupt the wire (sizes, NULs inside C-octet
strings, integer ranges, non-Latin-1 text) and raises :class:`PduEncodeError`;
semantic checks (esm_class, TLV values) are left to decode on the other side.

The work is split in two rooms: :mod:`catalyst_smpp.protocol.decode` (the table-driven decoder
and the C scanner for submit_sm / deliver_sm) and :mod:`catalyst_smpp.protocol.encode` (the
table-driven encoder and the ``struct`` encoders of the hot commands).  This module is the
contract and the import path the rest of the code uses.
"""

from __future__ import annotations

from catalyst_smpp.protocol.decode import decode_pdu, decode_pdu_keeping_tlvs
from catalyst_smpp.protocol.encode import PduEncodeError, encode_pdu

__all__ = ["PduEncodeError", "decode_pdu", "decode_pdu_keeping_tlvs", "encode_pdu"]
