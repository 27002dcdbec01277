/* Decoding of the hot SMPP PDUs (submit_sm / deliver_sm) into a fixed-layout record. */
#ifndef CSMPP_PDU_H
#define CSMPP_PDU_H

#include <stddef.h>
#include <stdint.h>

#include "csmpp_common.h"

/* cdef:begin */
#define CSMPP_SM_RECORD_LEN 687
#define CSMPP_SM_MAX_TLVS 32

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
 * handled: then record (CSMPP_SM_RECORD_LEN octets, caller-owned) receives, big-endian,
 *   u32 offset of the first TLV, u32 offset of the PDU's end (equal when there are no TLVs),
 *   u32 command_status,
 *   u32 sequence_number, u8 command_id (4 or 5), 11 x u8 (source_addr_ton, source_addr_npi,
 *   dest_addr_ton, dest_addr_npi, esm_class, protocol_id, priority_flag,
 *   registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id),
 *   then Pascal strings (length octet + data, fixed slot sizes) service_type[6],
 *   source_addr[21], destination_addr[21], schedule_delivery_time[17],
 *   validity_period[17], short_message[255] (365 octets so far),
 *   u8 number of TLVs, u8 flags (bit 0: a TLV whose spec has CSMPP_TLV_TRIGGER is present),
 *   then for each TLV in wire order: u16 tag, u32 offset of its value, u32 offset past it,
 * and the result is 1.  A TLV whose tag is in specs (nspecs entries) must have a length
 * its entry allows, and a C-octet string no NUL before its last octet; other tags are
 * taken as they are.
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
