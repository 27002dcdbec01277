"""SMPP command ids, command statuses and the other numbered values of v3.4 (and v5.0 where seen in practice).

Enum members are spelled as in the specification.  Values that arrive from a
peer and are not listed here stay plain integers (vendors use 0x400-0x4FF).
"""

from __future__ import annotations

import enum
from typing import Final

HEADER_LENGTH: Final = 16
MAX_SEQUENCE_NUMBER: Final = 0x7FFFFFFF
DEFAULT_MAX_COMMAND_LENGTH: Final = 64 * 1024
RESPONSE_BIT: Final = 0x80000000


class CommandId(enum.IntEnum):
    generic_nack = 0x80000000
    bind_receiver = 0x00000001
    bind_receiver_resp = 0x80000001
    bind_transmitter = 0x00000002
    bind_transmitter_resp = 0x80000002
    query_sm = 0x00000003
    query_sm_resp = 0x80000003
    submit_sm = 0x00000004
    submit_sm_resp = 0x80000004
    deliver_sm = 0x00000005
    deliver_sm_resp = 0x80000005
    unbind = 0x00000006
    unbind_resp = 0x80000006
    replace_sm = 0x00000007
    replace_sm_resp = 0x80000007
    cancel_sm = 0x00000008
    cancel_sm_resp = 0x80000008
    bind_transceiver = 0x00000009
    bind_transceiver_resp = 0x80000009
    outbind = 0x0000000B
    enquire_link = 0x00000015
    enquire_link_resp = 0x80000015
    submit_multi = 0x00000021
    submit_multi_resp = 0x80000021
    alert_notification = 0x00000102
    data_sm = 0x00000103
    data_sm_resp = 0x80000103

    @property
    def is_response(self) -> bool:
        return bool(self.value & RESPONSE_BIT)


class CommandStatus(enum.IntEnum):
    ESME_ROK = 0x00000000
    ESME_RINVMSGLEN = 0x00000001
    ESME_RINVCMDLEN = 0x00000002
    ESME_RINVCMDID = 0x00000003
    ESME_RINVBNDSTS = 0x00000004
    ESME_RALYBND = 0x00000005
    ESME_RINVPRTFLG = 0x00000006
    ESME_RINVREGDLVFLG = 0x00000007
    ESME_RSYSERR = 0x00000008
    ESME_RINVSRCADR = 0x0000000A
    ESME_RINVDSTADR = 0x0000000B
    ESME_RINVMSGID = 0x0000000C
    ESME_RBINDFAIL = 0x0000000D
    ESME_RINVPASWD = 0x0000000E
    ESME_RINVSYSID = 0x0000000F
    ESME_RCANCELFAIL = 0x00000011
    ESME_RREPLACEFAIL = 0x00000013
    ESME_RMSGQFUL = 0x00000014
    ESME_RINVSERTYP = 0x00000015
    ESME_RINVNUMDESTS = 0x00000033
    ESME_RINVDLNAME = 0x00000034
    ESME_RINVDESTFLAG = 0x00000040
    ESME_RINVSUBREP = 0x00000042
    ESME_RINVESMCLASS = 0x00000043
    ESME_RCNTSUBDL = 0x00000044
    ESME_RSUBMITFAIL = 0x00000045
    ESME_RINVSRCTON = 0x00000048
    ESME_RINVSRCNPI = 0x00000049
    ESME_RINVDSTTON = 0x00000050
    ESME_RINVDSTNPI = 0x00000051
    ESME_RINVSYSTYP = 0x00000053
    ESME_RINVREPFLAG = 0x00000054
    ESME_RINVNUMMSGS = 0x00000055
    ESME_RTHROTTLED = 0x00000058
    ESME_RINVSCHED = 0x00000061
    ESME_RINVEXPIRY = 0x00000062
    ESME_RINVDFTMSGID = 0x00000063
    ESME_RX_T_APPN = 0x00000064
    ESME_RX_P_APPN = 0x00000065
    ESME_RX_R_APPN = 0x00000066
    ESME_RQUERYFAIL = 0x00000067
    ESME_RINVOPTPARSTREAM = 0x000000C0
    ESME_ROPTPARNOTALLWD = 0x000000C1
    ESME_RINVPARLEN = 0x000000C2
    ESME_RMISSINGOPTPARAM = 0x000000C3
    ESME_RINVOPTPARAMVAL = 0x000000C4
    ESME_RDELIVERYFAILURE = 0x000000FE
    ESME_RUNKNOWNERR = 0x000000FF
    # SMPP v5.0 additions seen in the field
    ESME_RSERTYPUNAUTH = 0x00000100
    ESME_RPROHIBITED = 0x00000101
    ESME_RSERTYPUNAVAIL = 0x00000102
    ESME_RSERTYPDENIED = 0x00000103
    ESME_RINVDCS = 0x00000104
    ESME_RINVSRCADDRSUBUNIT = 0x00000105
    ESME_RINVDSTADDRSUBUNIT = 0x00000106


def status_name(status: int) -> str:
    """A readable name for any command_status, known or vendor-specific."""
    try:
        return CommandStatus(status).name
    except ValueError:
        if 0x400 <= status <= 0x4FF:
            return f"vendor_0x{status:08X}"
        return f"0x{status:08X}"


class Ton(enum.IntEnum):
    UNKNOWN = 0
    INTERNATIONAL = 1
    NATIONAL = 2
    NETWORK_SPECIFIC = 3
    SUBSCRIBER_NUMBER = 4
    ALPHANUMERIC = 5
    ABBREVIATED = 6


class Npi(enum.IntEnum):
    UNKNOWN = 0
    ISDN = 1
    DATA = 3
    TELEX = 4
    LAND_MOBILE = 6
    NATIONAL = 8
    PRIVATE = 9
    ERMES = 10
    INTERNET = 14
    WAP_CLIENT_ID = 18


class EsmClass(enum.IntFlag):
    """esm_class bits (section 5.2.12)."""

    # messaging mode (bits 1-0)
    MODE_DEFAULT = 0x00
    MODE_DATAGRAM = 0x01
    MODE_FORWARD = 0x02
    MODE_STORE_FORWARD = 0x03
    # message type (bits 5-2)
    TYPE_DELIVERY_RECEIPT = 0x04
    TYPE_DELIVERY_ACK = 0x08
    TYPE_USER_ACK = 0x10
    TYPE_CONVERSATION_ABORT = 0x18
    TYPE_INTERMEDIATE_NOTIFICATION = 0x20
    # GSM network specific features (bits 7-6)
    UDHI = 0x40
    REPLY_PATH = 0x80


ESM_MODE_MASK: Final = 0x03
ESM_TYPE_MASK: Final = 0x3C
ESM_GSM_MASK: Final = 0xC0


class MessageState(enum.IntEnum):
    """message_state values (section 5.2.28)."""

    ENROUTE = 1
    DELIVERED = 2
    EXPIRED = 3
    DELETED = 4
    UNDELIVERABLE = 5
    ACCEPTED = 6
    UNKNOWN = 7
    REJECTED = 8


class InterfaceVersion(enum.IntEnum):
    V33 = 0x33
    V34 = 0x34
    V50 = 0x50


class DestFlag(enum.IntEnum):
    """dest_flag of a submit_multi destination (section 5.2.25)."""

    SME_ADDRESS = 1
    DISTRIBUTION_LIST = 2
