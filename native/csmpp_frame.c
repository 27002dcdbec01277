#include "csmpp_frame.h"

static inline uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

int64_t csmpp_frame_scan(const uint8_t *buf, size_t len, uint32_t max_len,
                         uint32_t *offsets, size_t max_pdus,
                         size_t *consumed, size_t *need)
{
    size_t pos = 0;
    size_t n = 0;

    while (n < max_pdus) {
        if (len - pos < CSMPP_HEADER_LEN) {
            *need = CSMPP_HEADER_LEN;
            break;
        }
        uint32_t cl = be32(buf + pos);
        if (cl < CSMPP_HEADER_LEN || cl > max_len) {
            /* report the bad length only when it is the first thing we see */
            *consumed = pos;
            *need = CSMPP_HEADER_LEN;
            if (n == 0)
                return cl < CSMPP_HEADER_LEN ? CSMPP_E_LEN_SHORT : CSMPP_E_LEN_LONG;
            return (int64_t)n;
        }
        if (len - pos < cl) {
            *need = cl;
            break;
        }
        offsets[n++] = (uint32_t)pos;
        pos += cl;
    }
    if (n == max_pdus) {
        /* output full: caller calls again from *consumed */
        if (len - pos < CSMPP_HEADER_LEN)
            *need = CSMPP_HEADER_LEN;
        else {
            uint32_t cl = be32(buf + pos);
            *need = (cl < CSMPP_HEADER_LEN || cl > max_len) ? CSMPP_HEADER_LEN : cl;
        }
    }
    *consumed = pos;
    return (int64_t)n;
}
