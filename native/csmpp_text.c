/* Text codecs and segmentation planning; see csmpp_text.h. */
#include <string.h>

#include "csmpp_gsm.h"
#include "csmpp_text.h"

#define ESC 0x1B
#define CR 0x0D
#define MAX_CHARS (INT32_MAX / 4 - 64)

enum { K_GSM, K_OCTET, K_UCS2 };

typedef struct {
    int32_t enc;
    int kind;
    int packed;
    uint32_t octet_max;
    const uint8_t *main_lo, *shift_lo;
    const uint32_t *main_hi, *shift_hi;
    uint16_t main_hi_n, shift_hi_n;
    int repl_units;          /* 0 = strict */
    uint8_t repl_code[4];
} codec_t;

/* Hot loops are written once as always-inline bodies taking `kind`, `width` and `packed`
 * as parameters, and instantiated with constants for each combination by a dispatcher. */
#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE uint32_t cp_at(const uint8_t *t, const int32_t width, size_t i)
{
    uint32_t v;
    if (width == 1)
        return t[i];
    memcpy(&v, t + 4 * i, 4);
    return v;
}

static inline int gsm_find(const uint8_t *lo, const uint32_t *hi, uint16_t n, uint32_t cp)
{
    size_t a = 0, b = n;
    if (cp < 0x100)
        return lo[cp] == 0xFF ? -1 : lo[cp];
    while (a < b) {
        size_t m = (a + b) / 2;
        uint32_t k = hi[m] >> 8;
        if (k < cp)
            a = m + 1;
        else if (k > cp)
            b = m;
        else
            return (int)(hi[m] & 0xFF);
    }
    return -1;
}

/* Units for cp (septets, octets, UTF-16 units), its codes in code[]; 0 = unmappable.
 * GSM: code[] holds septets (ESC first for a single-shift character); UCS-2: octets. */
ALWAYS_INLINE int enc_char_k(const codec_t *c, const int kind, uint32_t cp, uint8_t code[4])
{
    int v;
    switch (kind) {
    case K_GSM:
        v = gsm_find(c->main_lo, c->main_hi, c->main_hi_n, cp);
        if (v >= 0) {
            code[0] = (uint8_t)v;
            return 1;
        }
        v = gsm_find(c->shift_lo, c->shift_hi, c->shift_hi_n, cp);
        if (v >= 0) {
            code[0] = ESC;
            code[1] = (uint8_t)v;
            return 2;
        }
        return 0;
    case K_OCTET:
        if (cp <= c->octet_max) {
            code[0] = (uint8_t)cp;
            return 1;
        }
        return 0;
    default: /* K_UCS2 */
        if (cp < 0xD800 || (cp >= 0xE000 && cp <= 0xFFFF)) {
            code[0] = (uint8_t)(cp >> 8);
            code[1] = (uint8_t)cp;
            return 1;
        }
        if (cp >= 0x10000 && cp <= 0x10FFFF) {
            uint32_t u = cp - 0x10000;
            uint32_t hs = 0xD800 | (u >> 10), ls = 0xDC00 | (u & 0x3FF);
            code[0] = (uint8_t)(hs >> 8);
            code[1] = (uint8_t)hs;
            code[2] = (uint8_t)(ls >> 8);
            code[3] = (uint8_t)ls;
            return 2;
        }
        return 0;
    }
}

static inline int enc_char(const codec_t *c, uint32_t cp, uint8_t code[4])
{
    return enc_char_k(c, c->kind, cp, code);
}

/* Units for cp, without the codes; 0 = unmappable.  `kind` is a constant at each use. */
ALWAYS_INLINE int units_k(const codec_t *c, const int kind, uint32_t cp)
{
    if (kind == K_GSM) {
        if (cp < 0x100)
            return c->main_lo[cp] != 0xFF ? 1 : c->shift_lo[cp] != 0xFF ? 2 : 0;
        if (gsm_find(c->main_lo, c->main_hi, c->main_hi_n, cp) >= 0)
            return 1;
        return gsm_find(c->shift_lo, c->shift_hi, c->shift_hi_n, cp) >= 0 ? 2 : 0;
    }
    if (kind == K_OCTET)
        return cp <= c->octet_max;
    /* branch-free on the mix of BMP and supplementary characters (emoji text mixes them at
     * random: a branch on the plane is mispredicted about every other character) */
    if (__builtin_expect(cp - 0xD800u < 0x800u || cp > 0x10FFFFu, 0))
        return 0;
    return 1 + (cp > 0xFFFF);
}

static int lang_ok(int32_t lang) { return lang >= 0 && lang < CSMPP_GSM_NLANG; }

static int32_t codec_init(codec_t *c, int32_t enc, int32_t single, int32_t locking,
                          int32_t replacement)
{
    memset(c, 0, sizeof *c);
    c->enc = enc;
    switch (enc) {
    case CSMPP_ENC_GSM7:
    case CSMPP_ENC_GSM7_PACKED:
        if (!lang_ok(single) || !lang_ok(locking) || !csmpp_gsm_has_lock[locking])
            return CSMPP_E_ARG;
        c->kind = K_GSM;
        c->packed = enc == CSMPP_ENC_GSM7_PACKED;
        c->main_lo = csmpp_gsm_lock_lo[locking];
        c->main_hi = csmpp_gsm_lock_hi[locking];
        c->main_hi_n = csmpp_gsm_lock_hi_n[locking];
        c->shift_lo = csmpp_gsm_shift_lo[single];
        c->shift_hi = csmpp_gsm_shift_hi[single];
        c->shift_hi_n = csmpp_gsm_shift_hi_n[single];
        break;
    case CSMPP_ENC_LATIN1:
    case CSMPP_ENC_BINARY:
    case CSMPP_ENC_ASCII:
        if (single || locking)
            return CSMPP_E_ARG;
        c->kind = K_OCTET;
        c->octet_max = enc == CSMPP_ENC_ASCII ? 0x7F : 0xFF;
        break;
    case CSMPP_ENC_UCS2:
        if (single || locking)
            return CSMPP_E_ARG;
        c->kind = K_UCS2;
        break;
    default:
        return CSMPP_E_ARG;
    }
    if (replacement != CSMPP_NO_REPLACEMENT) {
        if (replacement < 0)
            return CSMPP_E_ARG;
        c->repl_units = enc_char(c, (uint32_t)replacement, c->repl_code);
        if (!c->repl_units)
            return CSMPP_E_ARG;
    }
    return 0;
}

/* --- output -------------------------------------------------------------------------- */

typedef struct {
    uint8_t *out;
    size_t cap, pos;
    uint32_t acc;
    int nbits;
    int packed;
    int32_t septets;
} writer_t;

static inline void writer_start(writer_t *w, int packed, int fill)
{
    w->acc = 0;
    w->nbits = fill;
    w->packed = packed;
    w->septets = 0;
}

static inline int put_septet(writer_t *w, uint8_t s)
{
    if (!w->packed) {
        if (w->pos >= w->cap)
            return CSMPP_E_OUTPUT;
        w->out[w->pos++] = s;
        return 0;
    }
    w->acc |= (uint32_t)s << w->nbits;
    w->nbits += 7;
    w->septets++;
    if (w->nbits >= 8) {
        if (w->pos >= w->cap)
            return CSMPP_E_OUTPUT;
        w->out[w->pos++] = (uint8_t)w->acc;
        w->acc >>= 8;
        w->nbits -= 8;
    }
    return 0;
}

/* Flush packed bits; 7 spare bits in the last octet get <CR>. */
static inline int writer_finish(writer_t *w)
{
    if (!w->packed || w->septets == 0)
        return 0;
    if (w->nbits == 1)
        w->acc |= (uint32_t)CR << 1;
    if (w->nbits > 0) {
        if (w->pos >= w->cap)
            return CSMPP_E_OUTPUT;
        w->out[w->pos++] = (uint8_t)w->acc;
    }
    return 0;
}

/* Encode t[start, end) into w.  Returns the units written, or CSMPP_E_UNMAPPABLE (*bad =
 * the index of the character) or CSMPP_E_OUTPUT.  No writer_finish. */
ALWAYS_INLINE int32_t encode_body(const codec_t *c, const uint8_t *t, const int32_t width, const int kind,
                                  const int packed, size_t start, size_t end, writer_t *w, size_t *bad)
{
    /* the writer's fields live in locals: a store through `out` (uint8_t) could alias them,
     * which would make the compiler reload and store them around every octet */
    uint8_t *const out = w->out;
    const size_t cap = w->cap;
    const uint8_t *const main_lo = c->main_lo, *const shift_lo = c->shift_lo;
    size_t pos = w->pos, i, next_try = start;
    uint8_t code[4];
    int32_t units = 0, rc = 0;
    for (i = start; i < end; i++) {
        uint32_t cp;
        int k;
        if (kind == K_UCS2 && i >= next_try) {
            /* runs of four BMP characters (no surrogates) at a time; after a run ends, the
             * next 16 characters go one by one (text that mixes in emoji would otherwise
             * make this test unpredictable) */
            while (end - i >= 4 && cap - pos >= 8) {
                uint32_t a = cp_at(t, width, i), b = cp_at(t, width, i + 1);
                uint32_t d = cp_at(t, width, i + 2), e = cp_at(t, width, i + 3);
                if (((a | b | d | e) > 0xFFFF) | (a - 0xD800u < 0x800u) | (b - 0xD800u < 0x800u) |
                    (d - 0xD800u < 0x800u) | (e - 0xD800u < 0x800u)) {
                    next_try = i + 16;
                    break;
                }
                out[pos] = (uint8_t)(a >> 8), out[pos + 1] = (uint8_t)a;
                out[pos + 2] = (uint8_t)(b >> 8), out[pos + 3] = (uint8_t)b;
                out[pos + 4] = (uint8_t)(d >> 8), out[pos + 5] = (uint8_t)d;
                out[pos + 6] = (uint8_t)(e >> 8), out[pos + 7] = (uint8_t)e;
                pos += 8;
                units += 4;
                i += 4;
            }
            if (i >= end)
                break;
        }
        cp = cp_at(t, width, i);
        if (kind == K_GSM && !packed && cp < 0x100) {
            /* the common case: one table look-up, written straight out */
            uint8_t v = main_lo[cp];
            if (v != 0xFF) {
                if (pos >= cap)
                    goto output;
                out[pos++] = v;
                units++;
                continue;
            }
            if ((v = shift_lo[cp]) != 0xFF) {
                if (cap - pos < 2)
                    goto output;
                out[pos++] = ESC;
                out[pos++] = v;
                units += 2;
                continue;
            }
        }
        if (kind == K_UCS2 && !(cp - 0xD800u < 0x800u || cp > 0x10FFFFu) && cap - pos >= 4) {
            /* one code unit or a surrogate pair, without a branch on which (emoji text mixes
             * them at random): four octets are written, the last two of a BMP character are
             * overwritten by what follows or lie past the end */
            uint32_t sup = cp > 0xFFFF, u = cp - 0x10000;
            uint32_t hi = sup ? 0xD800 | (u >> 10) : cp, lo = 0xDC00 | (u & 0x3FF);
            out[pos] = (uint8_t)(hi >> 8);
            out[pos + 1] = (uint8_t)hi;
            out[pos + 2] = (uint8_t)(lo >> 8);
            out[pos + 3] = (uint8_t)lo;
            pos += 2 + 2 * sup;
            units += 1 + (int32_t)sup;
            continue;
        }
        k = enc_char_k(c, kind, cp, code);
        if (k == 0 && c->repl_units) {
            memcpy(code, c->repl_code, 4);
            k = c->repl_units;
        }
        if (k == 0) {
            *bad = i;
            rc = CSMPP_E_UNMAPPABLE;
            goto done;
        }
        if (kind == K_GSM && packed) {
            int j;
            w->pos = pos;
            for (j = 0; j < k; j++)
                if ((rc = put_septet(w, code[j])) < 0)
                    return rc;
            pos = w->pos;
        } else {
            int j, octets = kind == K_UCS2 ? 2 * k : k;
            if (cap - pos < (size_t)octets)
                goto output;
            for (j = 0; j < octets; j++)
                out[pos++] = code[j];
        }
        units += k;
    }
done:
    w->pos = pos;
    return rc < 0 ? rc : units;
output:
    w->pos = pos;
    return CSMPP_E_OUTPUT;
}

static int32_t encode_range(const codec_t *c, const uint8_t *t, int32_t width, size_t start, size_t end,
                            writer_t *w, size_t *bad)
{
    int wide = width == 4;
    switch (c->kind) {
    case K_GSM:
        if (c->packed)
            return wide ? encode_body(c, t, 4, K_GSM, 1, start, end, w, bad)
                        : encode_body(c, t, 1, K_GSM, 1, start, end, w, bad);
        return wide ? encode_body(c, t, 4, K_GSM, 0, start, end, w, bad)
                    : encode_body(c, t, 1, K_GSM, 0, start, end, w, bad);
    case K_OCTET:
        return wide ? encode_body(c, t, 4, K_OCTET, 0, start, end, w, bad)
                    : encode_body(c, t, 1, K_OCTET, 0, start, end, w, bad);
    default:
        return wide ? encode_body(c, t, 4, K_UCS2, 0, start, end, w, bad)
                    : encode_body(c, t, 1, K_UCS2, 0, start, end, w, bad);
    }
}

/* --- encode / decode ----------------------------------------------------------------- */

size_t csmpp_text_encode_max_len(size_t n, int32_t enc)
{
    switch (enc) {
    case CSMPP_ENC_GSM7:
    case CSMPP_ENC_UCS2:
        return enc == CSMPP_ENC_UCS2 ? 4 * n : 2 * n;
    case CSMPP_ENC_GSM7_PACKED:
        return (2 * n * 7 + 6) / 8 + 2;
    default:
        return n;
    }
}

int32_t csmpp_text_encode(const void *text, size_t n, int32_t width, int32_t enc,
                          int32_t single_lang, int32_t locking_lang, int32_t replacement,
                          int32_t fill_bits, uint8_t *out, size_t out_cap, int32_t *info)
{
    const uint8_t *t = (const uint8_t *)text;
    codec_t c;
    writer_t w;
    int32_t units = 0;
    int32_t rc;

    info[0] = 0;
    info[1] = -1;
    if ((width != 1 && width != 4) || n > MAX_CHARS)
        return CSMPP_E_ARG;
    if ((rc = codec_init(&c, enc, single_lang, locking_lang, replacement)) < 0)
        return rc;
    if (fill_bits < 0 || fill_bits > 6 || (fill_bits && !c.packed))
        return CSMPP_E_ARG;
    w.out = out;
    w.cap = out_cap;
    w.pos = 0;
    writer_start(&w, c.packed, fill_bits);

    {
        size_t bad = 0;
        units = encode_range(&c, t, width, 0, n, &w, &bad);
        if (units == CSMPP_E_UNMAPPABLE)
            info[1] = (int32_t)bad;
        if (units < 0)
            return units;
    }
    if ((rc = writer_finish(&w)) < 0)
        return rc;
    info[0] = units;
    return (int32_t)w.pos;
}

size_t csmpp_text_decode_max_len(size_t len, int32_t enc)
{
    if (enc == CSMPP_ENC_GSM7_PACKED)
        return len * 8 / 7 + 1;
    if (enc == CSMPP_ENC_UCS2)
        return (len + 1) / 2;
    return len;
}

static inline uint32_t packed_septet(const uint8_t *d, size_t len, size_t bit)
{
    size_t byte = bit >> 3;
    unsigned sh = (unsigned)(bit & 7);
    uint32_t v = (uint32_t)d[byte] >> sh;
    if (sh > 1 && byte + 1 < len)
        v |= (uint32_t)d[byte + 1] << (8 - sh);
    return v & 0x7F;
}

int32_t csmpp_text_decode(const uint8_t *data, size_t len, int32_t enc, int32_t single_lang,
                          int32_t locking_lang, int32_t fill_bits, int32_t septets,
                          uint32_t replacement, uint32_t *out, size_t out_cap)
{
    size_t i, n, o = 0;

    if (len > MAX_CHARS || replacement > 0x10FFFF || (replacement >= 0xD800 && replacement < 0xE000))
        return CSMPP_E_ARG;
    if (enc == CSMPP_ENC_GSM7 || enc == CSMPP_ENC_GSM7_PACKED) {
        const uint16_t *mt, *st;
        int packed = enc == CSMPP_ENC_GSM7_PACKED;
        if (!lang_ok(single_lang) || !lang_ok(locking_lang) || !csmpp_gsm_has_lock[locking_lang])
            return CSMPP_E_ARG;
        if (fill_bits < 0 || fill_bits > 6 || (fill_bits && !packed) || (septets >= 0 && !packed))
            return CSMPP_E_ARG;
        mt = csmpp_gsm_lock_tab[locking_lang];
        st = csmpp_gsm_shift_tab[single_lang];
        if (packed) {
            size_t avail = len * 8 >= (size_t)fill_bits ? (len * 8 - (size_t)fill_bits) / 7 : 0;
            if (septets >= 0) {
                if ((size_t)septets > avail)
                    return CSMPP_E_ARG;
                n = (size_t)septets;
            } else {
                n = avail;
                /* a <CR> in 7 spare bits at the end is padding (23.038 6.1.2.3.1) */
                if (n > 0 && (size_t)fill_bits + 7 * n == len * 8 &&
                    packed_septet(data, len, (size_t)fill_bits + 7 * (n - 1)) == CR)
                    n--;
            }
        } else {
            n = len;
        }
        for (i = 0; i < n; i++) {
            uint32_t s = packed ? packed_septet(data, len, (size_t)fill_bits + 7 * i) : data[i];
            uint32_t cp;
            if (o >= out_cap)
                return CSMPP_E_OUTPUT;
            if (s > 0x7F) {
                out[o++] = replacement;
                continue;
            }
            if (s == ESC) {
                uint32_t t2;
                if (i + 1 >= n) {
                    out[o++] = 0x20;
                    continue;
                }
                t2 = packed ? packed_septet(data, len, (size_t)fill_bits + 7 * (i + 1)) : data[i + 1];
                if (t2 > 0x7F) {
                    out[o++] = replacement; /* the ESC; the bad octet is replaced next */
                    continue;
                }
                i++;
                if (t2 == ESC) {
                    out[o++] = 0x20;
                    continue;
                }
                cp = st[t2];
                if (cp == 0xFFFF)
                    cp = mt[t2];
                out[o++] = cp == 0xFFFF ? replacement : cp;
                continue;
            }
            cp = mt[s];
            out[o++] = cp == 0xFFFF ? replacement : cp;
        }
        return (int32_t)o;
    }
    if (single_lang || locking_lang || fill_bits || septets >= 0)
        return CSMPP_E_ARG;
    switch (enc) {
    case CSMPP_ENC_LATIN1:
    case CSMPP_ENC_BINARY:
    case CSMPP_ENC_ASCII:
        if (out_cap < len)
            return CSMPP_E_OUTPUT;
        if (enc == CSMPP_ENC_ASCII) {
            for (i = 0; i < len; i++)
                out[i] = data[i] < 0x80 ? data[i] : replacement;
        } else {
            for (i = 0; i < len; i++)
                out[i] = data[i];
        }
        return (int32_t)len;
    case CSMPP_ENC_UCS2:
        for (i = 0; i + 1 < len; i += 2) {
            uint32_t u = ((uint32_t)data[i] << 8) | data[i + 1];
            if (o >= out_cap)
                return CSMPP_E_OUTPUT;
            if (u >= 0xD800 && u < 0xDC00 && i + 3 < len) {
                uint32_t l = ((uint32_t)data[i + 2] << 8) | data[i + 3];
                if (l >= 0xDC00 && l < 0xE000) {
                    out[o++] = 0x10000 + ((u - 0xD800) << 10) + (l - 0xDC00);
                    i += 2;
                    continue;
                }
            }
            out[o++] = (u >= 0xD800 && u < 0xE000) ? replacement : u;
        }
        if (len & 1) {
            if (o >= out_cap)
                return CSMPP_E_OUTPUT;
            out[o++] = replacement;
        }
        return (int32_t)o;
    default:
        return CSMPP_E_ARG;
    }
}

/* --- segmentation -------------------------------------------------------------------- */

typedef struct {
    codec_t c;
    int32_t single, locking;
    int32_t udh1, udhn;     /* UDH octets (incl. UDHL) of a lone message / of each part */
    int32_t cap1, capn;     /* units that fit a lone message / each part */
    int32_t nparts, total;  /* layout result */
    int32_t err_pos;
} plan_t;

static int32_t capacity(int kind, int32_t udh)
{
    switch (kind) {
    case K_GSM:
        return (140 * 8 - 8 * udh) / 7;
    case K_OCTET:
        return 140 - udh;
    default:
        return (140 - udh) / 2;
    }
}

static int32_t udh_len(int multi, int32_t method, int32_t single, int32_t locking, int32_t port_ie)
{
    int32_t l = 0;
    if (multi && method == CSMPP_SEG_UDH8)
        l += 5;
    if (multi && method == CSMPP_SEG_UDH16)
        l += 6;
    if (single)
        l += 3;
    if (locking)
        l += 3;
    if (port_ie == 8)
        l += 4;
    else if (port_ie == 16)
        l += 6;
    return l ? l + 1 : 0;
}

static int32_t plan_setup(plan_t *p, int32_t enc, int32_t single, int32_t locking, int32_t method,
                          int32_t port_ie, int32_t replacement)
{
    int32_t rc = codec_init(&p->c, enc, single, locking, replacement);
    if (rc < 0)
        return rc;
    p->single = single;
    p->locking = locking;
    p->udh1 = udh_len(0, method, single, locking, port_ie);
    p->udhn = udh_len(1, method, single, locking, port_ie);
    p->cap1 = capacity(p->c.kind, p->udh1);
    /* SAR parts leave room for the 8-bit-reference IE the SMSC adds on the air interface */
    p->capn = capacity(p->c.kind, method == CSMPP_SEG_SAR ? udh_len(1, CSMPP_SEG_UDH8, single, locking, port_ie)
                                                          : p->udhn);
    if (method == CSMPP_SEG_PAYLOAD)
        p->cap1 = p->capn = INT32_MAX;
    return 0;
}

/* Greedy layout; records (start, end) in parts[5*i + 3 .. 4] while room lasts.
 * Returns 0 or CSMPP_E_UNMAPPABLE (p->err_pos set). */
ALWAYS_INLINE int32_t layout_body(plan_t *p, const uint8_t *t, const int32_t width, const int kind, size_t n,
                                  int32_t *parts, size_t max_parts)
{
    int32_t cur = 0, total = 0, np = 0, capn = p->capn;
    size_t i, start = 0;
    for (i = 0; i < n; i++) {
        int k = units_k(&p->c, kind, cp_at(t, width, i));
        if (!k) {
            k = p->c.repl_units;
            if (!k) {
                p->err_pos = (int32_t)i;
                return CSMPP_E_UNMAPPABLE;
            }
        }
        if (cur + k > capn) {
            if (parts && (size_t)np < max_parts) {
                parts[5 * np + 3] = (int32_t)start;
                parts[5 * np + 4] = (int32_t)i;
            }
            np++;
            start = i;
            cur = 0;
        }
        cur += k;
        total += k;
    }
    if (total <= p->cap1) {
        np = 0;
        start = 0;
    }
    if (parts && (size_t)np < max_parts) {
        parts[5 * np + 3] = (int32_t)start;
        parts[5 * np + 4] = (int32_t)n;
    }
    p->nparts = np + 1;
    p->total = total;
    p->err_pos = -1;
    return 0;
}

static int32_t layout(plan_t *p, const uint8_t *t, int32_t width, size_t n, int32_t *parts,
                      size_t max_parts)
{
    int wide = width == 4;
    switch (p->c.kind) {
    case K_GSM:
        return wide ? layout_body(p, t, 4, K_GSM, n, parts, max_parts)
                    : layout_body(p, t, 1, K_GSM, n, parts, max_parts);
    case K_OCTET:
        return wide ? layout_body(p, t, 4, K_OCTET, n, parts, max_parts)
                    : layout_body(p, t, 1, K_OCTET, n, parts, max_parts);
    default:
        return wide ? layout_body(p, t, 4, K_UCS2, n, parts, max_parts)
                    : layout_body(p, t, 1, K_UCS2, n, parts, max_parts);
    }
}

/* A lower bound of the (parts, bits) a candidate can reach for n characters: each takes at
 * least one unit, and a part holds at most capn units. */
static void plan_lower_bound(const plan_t *p, size_t n, int32_t *parts, int64_t *bits)
{
    int unit = p->c.kind == K_GSM ? 7 : p->c.kind == K_OCTET ? 8 : 16;
    int64_t np = (int64_t)n <= p->cap1 ? 1 : ((int64_t)n + p->capn - 1) / p->capn;
    *parts = np > INT32_MAX ? INT32_MAX : (int32_t)np;
    *bits = (int64_t)n * unit + np * 8 * (np > 1 ? p->udhn : p->udh1);
}

static int64_t plan_cost_bits(const plan_t *p)
{
    int unit = p->c.kind == K_GSM ? 7 : p->c.kind == K_OCTET ? 8 : 16;
    int32_t udh = p->nparts > 1 ? p->udhn : p->udh1;
    return (int64_t)p->total * unit + (int64_t)p->nparts * 8 * udh;
}

static inline void put_ie(uint8_t *o, size_t *pos, uint8_t iei, uint8_t len)
{
    o[(*pos)++] = iei;
    o[(*pos)++] = len;
}

size_t csmpp_seg_max_len(size_t n, int32_t method)
{
    size_t parts = method == CSMPP_SEG_PAYLOAD ? 1 : (n < CSMPP_SEG_MAX_PARTS ? n : CSMPP_SEG_MAX_PARTS);
    if (parts == 0)
        parts = 1;
    /* 4 octets a code point (UCS-2 surrogate pair) at most, 2 packing bytes and a
     * 20-octet UDH a part */
    return 4 * n + parts * 24;
}

int32_t csmpp_seg_plan(const void *text, size_t n, int32_t width, int32_t enc,
                       int32_t single_lang, int32_t locking_lang, uint32_t auto_encs,
                       uint32_t auto_langs, int32_t method, int32_t ref, int32_t port_ie,
                       int32_t dst_port, int32_t src_port, int32_t replacement, uint8_t *out,
                       size_t out_cap, int32_t *parts, size_t max_parts, int32_t *info)
{
    const uint8_t *t = (const uint8_t *)text;
    plan_t best, cand;
    int32_t rc, pi, fill;
    writer_t w;
    int have_best = 0;

    memset(info, 0, sizeof(int32_t) * CSMPP_SEG_INFO_LEN);
    info[4] = -1;
    if ((width != 1 && width != 4) || n > MAX_CHARS)
        return CSMPP_E_ARG;
    if (method < CSMPP_SEG_UDH8 || method > CSMPP_SEG_PAYLOAD)
        return CSMPP_E_ARG;
    if (ref < 0 || ref > (method == CSMPP_SEG_UDH8 ? 0xFF : 0xFFFF))
        return CSMPP_E_ARG;
    if (port_ie != 0 && port_ie != 8 && port_ie != 16)
        return CSMPP_E_ARG;
    if (port_ie) {
        int32_t pmax = port_ie == 8 ? 0xFF : 0xFFFF;
        if (dst_port < 0 || dst_port > pmax || src_port < 0 || src_port > pmax)
            return CSMPP_E_ARG;
    }

    if (enc != CSMPP_ENC_AUTO) {
        if ((rc = plan_setup(&best, enc, single_lang, locking_lang, method, port_ie, replacement)) < 0)
            return rc;
        if ((rc = layout(&best, t, width, n, parts, max_parts)) < 0) {
            info[4] = best.err_pos;
            return rc;
        }
    } else {
        /* candidates in order of preference */
        int32_t cands[3 * (1 + 3 * CSMPP_GSM_NLANG + 3)];
        int nc = 0, i, first_err = -1, laid = -1, best_i = -1;
        uint32_t gsm_bits = (1u << CSMPP_ENC_GSM7) | (1u << CSMPP_ENC_GSM7_PACKED);
        if (auto_encs & ~((1u << CSMPP_ENC_GSM7) | (1u << CSMPP_ENC_GSM7_PACKED) | (1u << CSMPP_ENC_LATIN1) |
                          (1u << CSMPP_ENC_ASCII) | (1u << CSMPP_ENC_UCS2)))
            return CSMPP_E_ARG;
        if (auto_langs & ~((1u << CSMPP_GSM_NLANG) - 2u))
            return CSMPP_E_ARG;
        if (auto_encs & gsm_bits) {
            int32_t g = (auto_encs & (1u << CSMPP_ENC_GSM7_PACKED)) ? CSMPP_ENC_GSM7_PACKED : CSMPP_ENC_GSM7;
            int32_t lang;
            cands[3 * nc] = g, cands[3 * nc + 1] = 0, cands[3 * nc + 2] = 0, nc++;
            for (lang = 1; lang < CSMPP_GSM_NLANG; lang++) {
                if (!(auto_langs & (1u << lang)))
                    continue;
                cands[3 * nc] = g, cands[3 * nc + 1] = lang, cands[3 * nc + 2] = 0, nc++;
                if (csmpp_gsm_has_lock[lang]) {
                    cands[3 * nc] = g, cands[3 * nc + 1] = 0, cands[3 * nc + 2] = lang, nc++;
                    cands[3 * nc] = g, cands[3 * nc + 1] = lang, cands[3 * nc + 2] = lang, nc++;
                }
            }
        }
        if (auto_encs & (1u << CSMPP_ENC_ASCII))
            cands[3 * nc] = CSMPP_ENC_ASCII, cands[3 * nc + 1] = 0, cands[3 * nc + 2] = 0, nc++;
        if (auto_encs & (1u << CSMPP_ENC_LATIN1))
            cands[3 * nc] = CSMPP_ENC_LATIN1, cands[3 * nc + 1] = 0, cands[3 * nc + 2] = 0, nc++;
        if (auto_encs & (1u << CSMPP_ENC_UCS2))
            cands[3 * nc] = CSMPP_ENC_UCS2, cands[3 * nc + 1] = 0, cands[3 * nc + 2] = 0, nc++;
        if (nc == 0)
            return CSMPP_E_ARG;
        if (replacement != CSMPP_NO_REPLACEMENT) {
            /* the replacement must be mappable in the fallback (the first candidate) */
            if ((rc = plan_setup(&cand, cands[0], cands[1], cands[2], method, port_ie, replacement)) < 0)
                return rc;
        }
        /* Each candidate laid out writes its part bounds to `parts`; the winner is laid out
         * again only when a later candidate overwrote them.  A candidate whose lower bound
         * cannot beat the best so far is skipped (ties go to the earlier candidate). */
        for (i = 0; i < nc; i++) {
            if ((rc = plan_setup(&cand, cands[3 * i], cands[3 * i + 1], cands[3 * i + 2], method, port_ie,
                                 CSMPP_NO_REPLACEMENT)) < 0)
                return rc;
            if (have_best) {
                int32_t lb_parts;
                int64_t lb_bits;
                plan_lower_bound(&cand, n, &lb_parts, &lb_bits);
                if (lb_parts > best.nparts || (lb_parts == best.nparts && lb_bits >= plan_cost_bits(&best)))
                    continue;
            }
            laid = i;
            if (layout(&cand, t, width, n, parts, max_parts) < 0) {
                if (i == 0)
                    first_err = cand.err_pos;
                continue;
            }
            if (!have_best || cand.nparts < best.nparts ||
                (cand.nparts == best.nparts && plan_cost_bits(&cand) < plan_cost_bits(&best))) {
                best = cand;
                best_i = i;
                have_best = 1;
            }
        }
        if (!have_best) {
            if (replacement == CSMPP_NO_REPLACEMENT) {
                info[4] = first_err;
                return CSMPP_E_UNMAPPABLE;
            }
            plan_setup(&best, cands[0], cands[1], cands[2], method, port_ie, replacement);
            best_i = -1;
        }
        if (best_i != laid && (rc = layout(&best, t, width, n, parts, max_parts)) < 0) {
            info[4] = best.err_pos;
            return rc;
        }
    }

    info[0] = best.c.enc;
    info[1] = best.single;
    info[2] = best.locking;
    info[3] = best.total;
    info[5] = best.nparts;
    if (best.nparts > CSMPP_SEG_MAX_PARTS)
        return CSMPP_E_INPUT;
    if ((size_t)best.nparts > max_parts)
        return CSMPP_E_OUTPUT;
    {
        int32_t udh = best.nparts > 1 ? best.udhn : best.udh1;
        fill = best.c.packed && udh ? (7 - (8 * udh) % 7) % 7 : 0;
        info[6] = fill;
        info[7] = udh;
    }

    w.out = out;
    w.cap = out_cap;
    w.pos = 0;
    for (pi = 0; pi < best.nparts; pi++) {
        size_t off = w.pos, bad = 0;
        int32_t udh = best.nparts > 1 ? best.udhn : best.udh1;
        int32_t start = parts[5 * pi + 3], end = parts[5 * pi + 4];
        if (udh) {
            if (out_cap - w.pos < (size_t)udh)
                return CSMPP_E_OUTPUT;
            out[w.pos++] = (uint8_t)(udh - 1);
            if (best.nparts > 1 && method == CSMPP_SEG_UDH8) {
                put_ie(out, &w.pos, 0x00, 3);
                out[w.pos++] = (uint8_t)ref;
                out[w.pos++] = (uint8_t)best.nparts;
                out[w.pos++] = (uint8_t)(pi + 1);
            } else if (best.nparts > 1 && method == CSMPP_SEG_UDH16) {
                put_ie(out, &w.pos, 0x08, 4);
                out[w.pos++] = (uint8_t)(ref >> 8);
                out[w.pos++] = (uint8_t)ref;
                out[w.pos++] = (uint8_t)best.nparts;
                out[w.pos++] = (uint8_t)(pi + 1);
            }
            if (best.single) {
                put_ie(out, &w.pos, 0x24, 1);
                out[w.pos++] = (uint8_t)best.single;
            }
            if (best.locking) {
                put_ie(out, &w.pos, 0x25, 1);
                out[w.pos++] = (uint8_t)best.locking;
            }
            if (port_ie == 8) {
                put_ie(out, &w.pos, 0x04, 2);
                out[w.pos++] = (uint8_t)dst_port;
                out[w.pos++] = (uint8_t)src_port;
            } else if (port_ie == 16) {
                put_ie(out, &w.pos, 0x05, 4);
                out[w.pos++] = (uint8_t)(dst_port >> 8);
                out[w.pos++] = (uint8_t)dst_port;
                out[w.pos++] = (uint8_t)(src_port >> 8);
                out[w.pos++] = (uint8_t)src_port;
            }
        }
        writer_start(&w, best.c.packed, fill);
        if ((rc = encode_range(&best.c, t, width, (size_t)start, (size_t)end, &w, &bad)) < 0)
            return rc;
        if ((rc = writer_finish(&w)) < 0)
            return rc;
        parts[5 * pi] = (int32_t)off;
        parts[5 * pi + 1] = udh;
        parts[5 * pi + 2] = (int32_t)(w.pos - off);
        if (method == CSMPP_SEG_PAYLOAD && w.pos - off > CSMPP_SEG_MAX_PAYLOAD) {
            info[5] = (int32_t)(w.pos - off);
            return CSMPP_E_INPUT;
        }
    }
    return best.nparts;
}

/* --- the one-buffer form for the Python face ------------------------------------------- */

#define SEG_TABLE_MAX (CSMPP_SEG_HEAD + 16 * CSMPP_SEG_MAX_PARTS)

size_t csmpp_seg_run_max_len(size_t n, int32_t method)
{
    return SEG_TABLE_MAX + csmpp_seg_max_len(n, method);
}

int32_t csmpp_seg_run(const char *text1, const char32_t *text4, size_t n, int32_t ref,
                      const int32_t *cfg, uint8_t *out, size_t out_cap)
{
    int32_t parts[CSMPP_SEG_PART_FIELDS * CSMPP_SEG_MAX_PARTS];
    int32_t info[CSMPP_SEG_INFO_LEN];
    int32_t tab[4 * CSMPP_SEG_MAX_PARTS];
    const void *text = text1 ? (const void *)text1 : (const void *)text4;
    int32_t width = text1 ? 1 : 4;
    int32_t rc, np, i;
    size_t base, end;

    if (out_cap < SEG_TABLE_MAX)
        return CSMPP_E_OUTPUT;
    if (!text || !cfg) {
        memset(out, 0, CSMPP_SEG_HEAD);
        return CSMPP_E_ARG;
    }
    rc = csmpp_seg_plan(text, n, width, cfg[0], cfg[1], cfg[2], (uint32_t)cfg[3], (uint32_t)cfg[4], cfg[5], ref,
                        cfg[6], cfg[7], cfg[8], cfg[9], out + SEG_TABLE_MAX, out_cap - SEG_TABLE_MAX, parts,
                        CSMPP_SEG_MAX_PARTS, info);
    memcpy(out, info, sizeof info);
    if (rc <= 0)
        return rc < 0 ? rc : CSMPP_E_ARG;
    np = rc;
    base = CSMPP_SEG_HEAD + 16 * (size_t)np;
    end = (size_t)parts[5 * (np - 1)] + (size_t)parts[5 * (np - 1) + 2];
    memmove(out + base, out + SEG_TABLE_MAX, end);
    for (i = 0; i < np; i++) {
        int32_t start = (int32_t)base + parts[5 * i];
        tab[i] = start;
        tab[np + i] = start + parts[5 * i + 2];
        tab[2 * np + i] = parts[5 * i + 3];
        tab[3 * np + i] = parts[5 * i + 4];
    }
    memcpy(out + CSMPP_SEG_HEAD, tab, 16 * (size_t)np);
    return (int32_t)(base + end);
}
