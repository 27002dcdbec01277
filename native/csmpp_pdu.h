/* Decoding of the hot SMPP PDUs (submit_sm / deliver_sm) into a fixed-layout record. */
#ifndef CSMPP_PDU_H
#define CSMPP_PDU_H

#include <stddef.h>
#include <stdint.h>

#include "csmpp_common.h"

/* cdef:begin */
#define CSMPP_SM_RECORD_LEN 966
#define CSMPP_SM_MAX_TLVS 32
#define CSMPP_SM_RECORD_BASE 358
#define CSMPP_SM_TLV_ENTRY_LEN 19

/* What the decoder knows about one TLV tag (the caller builds the table from its spec). */
typedef struct {
    uint16_t tag;
    uint16_t min_len;   /* octet / C-octet strings: allowed value lengths (C-octet: with NUL) */
    uint16_t max_len;
    uint8_t kind;       /* CSMPP_TLV_INT, CSMPP_TLV_COCTET or CSMPP_TLV_OCTET */
    uint8_t sizes;      /* CSMPP_TLV_INT: bit n-1 set when a value of n octets is allowed */
    uint8_t flags;      /* CSMPP_TLV_TRIGGER: the caller checks rules when this tag is present */
} csmpp_tlv_spec;

#define CSMPP_TLV_INT 1
#define CSMPP_TLV_COCTET 2
#define CSMPP_TLV_OCTET 3
#define CSMPP_TLV_TRIGGER 1

/* Decode the submit_sm or deliver_sm PDU at buf[offset] (buf holds len octets).
 *
 * Only a PDU that is complete and valid in every mandatory field and every TLV is
 * handled: then record (CSMPP_SM_RECORD_LEN octets, caller-owned) receives, big-endian and
 * in the order of the Python constructor (so that one precompiled struct reads it back),
 *   u32 sequence_number, u32 command_status,
 *   service_type[6], u8 source_addr_ton, u8 source_addr_npi, source_addr[21],
 *   u8 dest_addr_ton, u8 dest_addr_npi, destination_addr[21], u8 esm_class,
 *   u8 protocol_id, u8 priority_flag, schedule_delivery_time[17], validity_period[17],
 *   u8 registered_delivery, u8 replace_if_present_flag, u8 data_coding,
 *   u8 sm_default_msg_id, short_message[255]
 *   (the strings as Pascal strings: length octet + data, in fixed slots),
 *   u8 command_id (4 or 5), u8 flags (bit 0: a TLV whose spec has CSMPP_TLV_TRIGGER is
 *   present) -- CSMPP_SM_RECORD_BASE (358) octets so far --
 *   then for each TLV in wire order (CSMPP_SM_TLV_ENTRY_LEN octets each): u16 tag, u32 offset
 *   of its value, u32 offset past it, u8 value kind, u64 v: kind CSMPP_TLV_INT -> v is the
 *   Integer value; kind CSMPP_TLV_COCTET -> v is the offset of the string's end (its first NUL,
 *   or the value's end when it has none); kind 0 (octet string, unknown tag) -> v is 0,
 * and the result is 1 + the number of TLVs.  A TLV whose tag is in specs (nspecs entries)
 * must have a length its entry allows, and a C-octet string no NUL before its last octet;
 * other tags are taken as they are.
 *
 * Anything else (another command, a short or bad command_length, an over-long or
 * unterminated string, a time that is neither empty nor 16 characters, an esm_class
 * message type the command does not allow, a bad sm_length, a TLV that is cut short,
 * overruns the PDU or breaks its spec, more than CSMPP_SM_MAX_TLVS TLVs) returns 0
 * without saying why: the caller's general decoder then works out the exact error.
 */
int csmpp_pdu_decode_sm(const char *buf, size_t len, size_t offset,
                        const csmpp_tlv_spec *specs, size_t nspecs, uint8_t *record);
/* cdef:end */

#endif
