/* GSM 7-bit character tables (3GPP TS 23.038): default alphabet, extension table and
 * the national language single-shift / locking-shift tables.  The tables themselves
 * are generated (native/tools/gen_gsm_tables.py) into csmpp_gsm.c. */
#ifndef CSMPP_GSM_H
#define CSMPP_GSM_H

#include <stdint.h>

#include "csmpp_common.h"

/* cdef:begin */
/* National language identifiers (3GPP TS 23.038 6.2.1.2.4); 0 = the default tables. */
#define CSMPP_LANG_DEFAULT 0
#define CSMPP_LANG_TURKISH 1
#define CSMPP_LANG_SPANISH 2      /* single shift only: no locking-shift table */
#define CSMPP_LANG_PORTUGUESE 3
#define CSMPP_LANG_BENGALI 4
#define CSMPP_LANG_GUJARATI 5
#define CSMPP_LANG_HINDI 6
#define CSMPP_LANG_KANNADA 7
#define CSMPP_LANG_MALAYALAM 8
#define CSMPP_LANG_ORIYA 9
#define CSMPP_LANG_PUNJABI 10
#define CSMPP_LANG_TAMIL 11
#define CSMPP_LANG_TELUGU 12
#define CSMPP_LANG_URDU 13
#define CSMPP_GSM_NLANG 14

/* The code point at `septet` (0-127) of the locking-shift table (shift == 0; language 0 =
 * the default alphabet) or single-shift table (shift != 0; language 0 = the default
 * extension table) of `lang`.  Returns the code point, -1 for an unassigned position
 * (0x1B, the escape, is always unassigned here), or CSMPP_E_ARG (bad language or septet,
 * or a locking-shift table that does not exist). */
int32_t csmpp_gsm_table_char(int32_t lang, int32_t shift, int32_t septet);
/* cdef:end */

#define CSMPP_GSM_LOCK_HI_MAX 80
#define CSMPP_GSM_SHIFT_HI_MAX 33

extern const uint16_t csmpp_gsm_lock_tab[CSMPP_GSM_NLANG][128];
extern const uint16_t csmpp_gsm_shift_tab[CSMPP_GSM_NLANG][128];
extern const uint8_t csmpp_gsm_has_lock[CSMPP_GSM_NLANG];
extern const uint8_t csmpp_gsm_lock_lo[CSMPP_GSM_NLANG][256];
extern const uint16_t csmpp_gsm_lock_hi_n[CSMPP_GSM_NLANG];
extern const uint32_t csmpp_gsm_lock_hi[CSMPP_GSM_NLANG][CSMPP_GSM_LOCK_HI_MAX];
extern const uint8_t csmpp_gsm_shift_lo[CSMPP_GSM_NLANG][256];
extern const uint16_t csmpp_gsm_shift_hi_n[CSMPP_GSM_NLANG];
extern const uint32_t csmpp_gsm_shift_hi[CSMPP_GSM_NLANG][CSMPP_GSM_SHIFT_HI_MAX];

#endif
