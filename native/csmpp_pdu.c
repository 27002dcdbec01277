#include <string.h>

#include "csmpp_pdu.h"

/* where the fields sit in the record (see csmpp_pdu.h) */
#define R_SEQ 0
#define R_ST 8
#define R_SATON 14
#define R_SA 16
#define R_DATON 37
#define R_DA 39
#define R_ESM 60
#define R_SD 63
#define R_VP 80
#define R_RD 97
#define R_SM 101
#define R_CID 356
#define R_FLAGS 357

static inline uint32_t rd32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Copy the C-octet string at *pos (at most max octets including its NUL, not past end)
 * into a Pascal slot; advance *pos past the NUL.  Returns the string length or -1. */
static inline int take_cstr(const uint8_t *buf, size_t *pos, size_t end, size_t max, uint8_t *slot)
{
    size_t p = *pos;
    size_t lim = p + max < end ? p + max : end;
    const uint8_t *nul = p < lim ? memchr(buf + p, 0, lim - p) : NULL;
    if (nul == NULL)
        return -1;
    size_t n = (size_t)(nul - (buf + p));
    slot[0] = (uint8_t)n;
    memcpy(slot + 1, buf + p, n);
    *pos = p + n + 1;
    return (int)n;
}

/* esm_class message-type bits (5-2) defined for each direction; mode and GSM bits are free. */
static inline int esm_ok(uint32_t cid, uint8_t esm)
{
    uint8_t t = esm & 0x3C;
    if (cid == 4)
        return t == 0x00 || t == 0x08 || t == 0x10;
    return t == 0x00 || t == 0x04 || t == 0x08 || t == 0x10 || t == 0x18 || t == 0x20;
}

static inline void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static const csmpp_tlv_spec *find_spec(const csmpp_tlv_spec *specs, size_t nspecs, uint16_t tag)
{
    for (size_t i = 0; i < nspecs; i++)
        if (specs[i].tag == tag)
            return &specs[i];
    return NULL;
}

/* 1 if the value buf[p, p + n) is acceptable for spec (NULL: an unknown tag). */
static int tlv_ok(const csmpp_tlv_spec *spec, const uint8_t *value, size_t n)
{
    if (spec == NULL)
        return 1;
    if (spec->kind == CSMPP_TLV_INT)
        return n >= 1 && n <= 8 && ((spec->sizes >> (n - 1)) & 1);
    if (n < spec->min_len || n > spec->max_len)
        return 0;
    if (spec->kind == CSMPP_TLV_COCTET && n > 1 && memchr(value, 0, n - 1) != NULL)
        return 0;
    return 1;
}

static inline void wr64(uint8_t *p, uint64_t v)
{
    wr32(p, (uint32_t)(v >> 32));
    wr32(p + 4, (uint32_t)v);
}

/* Walk the TLVs in buf[p, end) into rec (flags, table); the number of TLVs, or -1 if one is bad. */
static int walk_tlvs(const uint8_t *buf, size_t p, size_t end,
                     const csmpp_tlv_spec *specs, size_t nspecs, uint8_t *rec)
{
    uint8_t *table = rec + CSMPP_SM_RECORD_BASE;
    int n = 0;
    uint8_t flags = 0;
    while (p < end) {
        if (end - p < 4 || n == CSMPP_SM_MAX_TLVS)
            return -1;
        uint16_t tag = (uint16_t)((buf[p] << 8) | buf[p + 1]);
        size_t vlen = (size_t)((buf[p + 2] << 8) | buf[p + 3]);
        p += 4;
        if (end - p < vlen)
            return -1;
        const csmpp_tlv_spec *spec = find_spec(specs, nspecs, tag);
        if (!tlv_ok(spec, buf + p, vlen))
            return -1;
        uint8_t kind = 0;
        uint64_t v = 0;
        if (spec != NULL) {
            flags |= spec->flags;
            if (spec->kind == CSMPP_TLV_INT) {
                kind = CSMPP_TLV_INT;
                for (size_t i = 0; i < vlen; i++)
                    v = (v << 8) | buf[p + i];
            } else if (spec->kind == CSMPP_TLV_COCTET) {
                const uint8_t *nul = vlen ? memchr(buf + p, 0, vlen) : NULL;
                kind = CSMPP_TLV_COCTET;
                v = nul != NULL ? (uint64_t)(nul - buf) : (uint64_t)(p + vlen);
            }
        }
        uint8_t *e = table + CSMPP_SM_TLV_ENTRY_LEN * n;
        wr16(e, tag);
        wr32(e + 2, (uint32_t)p);
        wr32(e + 6, (uint32_t)(p + vlen));
        e[10] = kind;
        wr64(e + 11, v);
        p += vlen;
        n++;
    }
    rec[R_FLAGS] = flags;
    return n;
}

int csmpp_pdu_decode_sm(const char *cbuf, size_t len, size_t offset,
                        const csmpp_tlv_spec *specs, size_t nspecs, uint8_t *rec)
{
    const uint8_t *buf = (const uint8_t *)cbuf;
    if (len > 0xFFFFFFFFu || offset > len || len - offset < 16)
        return 0;
    const uint8_t *h = buf + offset;
    uint32_t cl = rd32(h);
    uint32_t cid = rd32(h + 4);
    if (cid != 4 && cid != 5)
        return 0;
    if (cl < 16 || cl > len - offset)
        return 0;
    size_t end = offset + cl;
    size_t p = offset + 16;
    int n;

    if (take_cstr(buf, &p, end, 6, rec + R_ST) < 0)
        return 0;
    if (end - p < 2)
        return 0;
    rec[R_SATON] = buf[p];
    rec[R_SATON + 1] = buf[p + 1];
    p += 2;
    if (take_cstr(buf, &p, end, 21, rec + R_SA) < 0)
        return 0;
    if (end - p < 2)
        return 0;
    rec[R_DATON] = buf[p];
    rec[R_DATON + 1] = buf[p + 1];
    p += 2;
    if (take_cstr(buf, &p, end, 21, rec + R_DA) < 0)
        return 0;
    if (end - p < 3)
        return 0;
    rec[R_ESM] = buf[p];
    rec[R_ESM + 1] = buf[p + 1];
    rec[R_ESM + 2] = buf[p + 2];
    p += 3;
    if (!esm_ok(cid, rec[R_ESM]))
        return 0;
    n = take_cstr(buf, &p, end, 17, rec + R_SD);
    if (n != 0 && n != 16)
        return 0;
    n = take_cstr(buf, &p, end, 17, rec + R_VP);
    if (n != 0 && n != 16)
        return 0;
    if (end - p < 5)
        return 0;
    memcpy(rec + R_RD, buf + p, 4); /* registered_delivery .. sm_default_msg_id */
    size_t sm_len = buf[p + 4];
    p += 5;
    if (sm_len > 254 || end - p < sm_len)
        return 0;
    rec[R_SM] = (uint8_t)sm_len;
    memcpy(rec + R_SM + 1, buf + p, sm_len);
    p += sm_len;
    n = walk_tlvs(buf, p, end, specs, nspecs, rec);
    if (n < 0)
        return 0;

    memcpy(rec + R_SEQ, h + 12, 4); /* sequence_number */
    memcpy(rec + R_SEQ + 4, h + 8, 4); /* command_status */
    rec[R_CID] = (uint8_t)cid;
    return 1 + n;
}
