#include "csmpp_receipt.h"

#include <string.h>

static inline int is_sep(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',' || c == ';' || c == 0;
}

static inline int is_alpha(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static inline int is_word(uint8_t c)
{
    return is_alpha(c) || (c >= '0' && c <= '9') || c == '_';
}

static inline uint8_t lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

/* case-insensitive compare of buf[pos, pos+n) with the lower-case word w */
static int word_is(const uint8_t *buf, size_t pos, size_t end, const char *w)
{
    size_t n = strlen(w);
    if (end - pos != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower(buf[pos + i]) != (uint8_t)w[i])
            return 0;
    return 1;
}

/* Is there a key at pos?  On success set *key_end and *colon (offset of ':'). */
static int key_at(const uint8_t *buf, size_t len, size_t pos, size_t *key_end, size_t *colon)
{
    if (!is_alpha(buf[pos]) || (pos > 0 && !is_sep(buf[pos - 1])))
        return 0;
    /* "submit date" / "done_date" / "SubmitDate": the two keys that may hold a blank */
    size_t p = 0;
    if (len - pos >= 6 && word_is(buf, pos, pos + 6, "submit"))
        p = pos + 6;
    else if (len - pos >= 4 && word_is(buf, pos, pos + 4, "done"))
        p = pos + 4;
    if (p) {
        while (p < len && (buf[p] == ' ' || buf[p] == '\t' || buf[p] == '_'))
            p++;
        if (len - p >= 4 && word_is(buf, p, p + 4, "date")) {
            size_t m = p + 4;
            while (m < len && (buf[m] == ' ' || buf[m] == '\t'))
                m++;
            if (m < len && buf[m] == ':') {
                *key_end = p + 4;
                *colon = m;
                return 1;
            }
        }
    }
    size_t j = pos;
    while (j < len && is_word(buf[j]))
        j++;
    size_t m = j;
    while (m < len && (buf[m] == ' ' || buf[m] == '\t'))
        m++;
    if (m < len && buf[m] == ':') {
        *key_end = j;
        *colon = m;
        return 1;
    }
    return 0;
}

static const struct {
    const char *name;
    int32_t kind;
} KEYS[] = {
    {"id", CSMPP_RF_ID},          {"sub", CSMPP_RF_SUB},         {"dlvrd", CSMPP_RF_DLVRD},
    {"dlvd", CSMPP_RF_DLVRD},     {"submitdate", CSMPP_RF_SUBMIT_DATE},
    {"donedate", CSMPP_RF_DONE_DATE},                            {"stat", CSMPP_RF_STAT},
    {"status", CSMPP_RF_STAT},    {"err", CSMPP_RF_ERR},         {"error", CSMPP_RF_ERR},
    {"text", CSMPP_RF_TEXT},      {"txt", CSMPP_RF_TEXT},
};

/* kind of the key buf[pos, end): lower case, blanks and '_' dropped */
static int32_t classify(const uint8_t *buf, size_t pos, size_t end)
{
    char key[16];
    size_t n = 0;
    for (size_t i = pos; i < end; i++) {
        uint8_t c = buf[i];
        if (c == ' ' || c == '\t' || c == '_')
            continue;
        if (n == sizeof key - 1)
            return CSMPP_RF_OTHER;
        key[n++] = (char)lower(c);
    }
    key[n] = 0;
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++)
        if (strcmp(key, KEYS[i].name) == 0)
            return KEYS[i].kind;
    return CSMPP_RF_OTHER;
}

/* a value trimmed of separators (the value of "text" is never trimmed: see the header) */
static void set_value(const uint8_t *buf, int32_t *f, size_t start, size_t end)
{
    while (start < end && is_sep(buf[start]))
        start++;
    while (end > start && is_sep(buf[end - 1]))
        end--;
    f[3] = (int32_t)start;
    f[4] = (int32_t)end;
}

int32_t csmpp_receipt_scan(const uint8_t *buf, size_t len, int32_t *out, size_t max_fields)
{
    if (len > (size_t)INT32_MAX)
        return CSMPP_E_ARG;
    size_t n = 0;
    size_t pos = 0;
    size_t key_end, colon;
    int32_t *prev = NULL;

    while (pos < len) {
        if (!key_at(buf, len, pos, &key_end, &colon)) {
            pos++;
            continue;
        }
        if (prev)
            set_value(buf, prev, (size_t)prev[3], pos);
        if (n == max_fields)
            return (int32_t)n;
        int32_t *f = out + 5 * n++;
        f[0] = classify(buf, pos, key_end);
        f[1] = (int32_t)pos;
        f[2] = (int32_t)key_end;
        f[3] = (int32_t)(colon + 1);
        f[4] = (int32_t)(colon + 1);
        if (f[0] == CSMPP_RF_TEXT) {
            f[4] = (int32_t)len; /* the rest of the input, exactly */
            return (int32_t)n;
        }
        prev = f;
        pos = colon + 1;
    }
    if (prev)
        set_value(buf, prev, (size_t)prev[3], len);
    return (int32_t)n;
}
