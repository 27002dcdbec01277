/* Framing of SMPP receive buffers: find every complete PDU in one call. */
#ifndef CSMPP_FRAME_H
#define CSMPP_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "csmpp_common.h"

#define CSMPP_HEADER_LEN 16u

/* cdef:begin */
/* Scan buf[0, len) from its start for back-to-back complete PDUs.
 *
 * For each complete PDU found, its start offset is written to offsets[i]
 * (at most max_pdus of them).  *consumed receives the number of bytes the
 * found PDUs cover; *need receives how many bytes in total must be buffered
 * (counted from *consumed) before another PDU can complete: 16 while the next
 * header is incomplete, else that PDU's command_length.
 *
 * Returns the number of PDUs found (>= 0).  If the first PDU at buf[0] has a
 * command_length outside [16, max_len] the result is CSMPP_E_LEN_SHORT or
 * CSMPP_E_LEN_LONG; a bad length after one or more good PDUs is reported by
 * the next call, so that the good ones are never lost.
 */
int64_t csmpp_frame_scan(const uint8_t *buf, size_t len, uint32_t max_len,
                         uint32_t *offsets, size_t max_pdus,
                         size_t *consumed, size_t *need);
/* cdef:end */

#endif
