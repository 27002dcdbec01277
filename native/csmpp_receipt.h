/* Receipt text: find the key:value fields of a delivery receipt's short_message. */
#ifndef CSMPP_RECEIPT_H
#define CSMPP_RECEIPT_H

#include <stddef.h>
#include <stdint.h>

#include "csmpp_common.h"

/* cdef:begin */
#define CSMPP_RF_OTHER 0
#define CSMPP_RF_ID 1
#define CSMPP_RF_SUB 2
#define CSMPP_RF_DLVRD 3
#define CSMPP_RF_SUBMIT_DATE 4
#define CSMPP_RF_DONE_DATE 5
#define CSMPP_RF_STAT 6
#define CSMPP_RF_ERR 7
#define CSMPP_RF_TEXT 8

/* Scan buf[0, len) for receipt fields.
 *
 * A key starts at the beginning of the input or after a separator (blank,
 * CR, LF, ',', ';', NUL) with an ASCII letter, runs over [A-Za-z0-9_], may be
 * "submit"/"done" followed by blanks or '_' and "date", and is followed by
 * optional blanks (space, tab) and ':'.  A value runs from after the ':' to the
 * start of the next key and is trimmed of separators; the value of a "text"
 * key runs from right after its ':' to the end of the input, not trimmed at
 * all (the original message's first characters, blanks included), and ends
 * the scan.
 *
 * For each field, five int32 go to out[5*i ...]: kind (CSMPP_RF_*), key start,
 * key end, value start, value end (byte offsets).  At most max_fields fields
 * are reported.  Returns the number of fields (>= 0), or CSMPP_E_ARG when len
 * does not fit an int32.
 */
int32_t csmpp_receipt_scan(const uint8_t *buf, size_t len, int32_t *out, size_t max_fields);
/* cdef:end */

#endif
