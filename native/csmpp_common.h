/* Error codes shared by every csmpp_* function: a negative return value. */
#ifndef CSMPP_COMMON_H
#define CSMPP_COMMON_H

/* cdef:begin */
#define CSMPP_E_LEN_SHORT -1   /* command_length below the 16-octet header */
#define CSMPP_E_LEN_LONG -2    /* command_length above the configured maximum */
#define CSMPP_E_OUTPUT -3      /* caller's output buffer too small */
#define CSMPP_E_INPUT -4       /* malformed input (see the function's notes) */
#define CSMPP_E_UNMAPPABLE -5  /* a character the target encoding cannot carry */
#define CSMPP_E_ARG -6         /* an argument out of range */
/* cdef:end */

#endif
