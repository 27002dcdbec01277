/* Decoding of the hot SMPP PDUs (submit_sm / deliver_sm) into a fixed-layout record. */
#ifndef CSMPP_PDU_H
#define CSMPP_PDU_H

#include <stddef.h>
#include <stdint.h>

#include "csmpp_common.h"

/* cdef:begin */
#define CSMPP_SM_RECORD_LEN 365

/* Decode the submit_sm or deliver_sm PDU at buf[offset] (buf holds len octets).
 *
 * Only a PDU that is complete and valid in every mandatory field is handled: then
 * record (CSMPP_SM_RECORD_LEN octets, caller-owned) receives, big-endian,
 *   u32 offset of the first TLV, u32 offset of the PDU's end (equal when there are no TLVs),
 *   u32 command_status,
 *   u32 sequence_number, u8 command_id (4 or 5), 11 x u8 (source_addr_ton, source_addr_npi,
 *   dest_addr_ton, dest_addr_npi, esm_class, protocol_id, priority_flag,
 *   registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id),
 *   then Pascal strings (length octet + data, fixed slot sizes) service_type[6],
 *   source_addr[21], destination_addr[21], schedule_delivery_time[17],
 *   validity_period[17], short_message[255],
 * and the result is 1.  The TLVs after the mandatory fields are left to the caller.
 *
 * Anything else (another command, a short or bad command_length, an over-long or
 * unterminated string, a time that is neither empty nor 16 characters, an esm_class
 * message type the command does not allow, a bad sm_length) returns 0 without
 * saying why: the caller's general decoder then works out the exact error.
 */
int csmpp_pdu_decode_sm(const char *buf, size_t len, size_t offset, uint8_t *record);
/* cdef:end */

#endif
