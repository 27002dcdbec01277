/* Text codecs (GSM 03.38 7-bit with national language tables, Latin-1, IA5/ASCII,
 * UCS-2/UTF-16BE, 8-bit) and the segmentation of a text into short messages.
 *
 * Text comes in as an array of code points: `width` 1 (one octet per code point,
 * i.e. Latin-1 / ASCII data) or 4 (uint32_t in native byte order, i.e. UTF-32).
 * Lone surrogates (U+D800-U+DFFF) in the input are characters no encoding carries.
 */
#ifndef CSMPP_TEXT_H
#define CSMPP_TEXT_H

#include <stddef.h>
#include <stdint.h>
#include <uchar.h>

#include "csmpp_common.h"

/* cdef:begin */
/* Encodings.  GSM7 is one septet per octet (SMPP's usual form of data_coding 0);
 * GSM7_PACKED packs septets into octets (3GPP TS 23.038 6.1.2.1.1). */
#define CSMPP_ENC_GSM7 0
#define CSMPP_ENC_GSM7_PACKED 1
#define CSMPP_ENC_LATIN1 2
#define CSMPP_ENC_ASCII 3
#define CSMPP_ENC_UCS2 4
#define CSMPP_ENC_BINARY 5
#define CSMPP_ENC_AUTO 15

/* How the parts of a long message are tied together. */
#define CSMPP_SEG_UDH8 0     /* UDH IE 0x00, 8-bit reference */
#define CSMPP_SEG_UDH16 1    /* UDH IE 0x08, 16-bit reference */
#define CSMPP_SEG_SAR 2      /* sar_* TLVs; no concatenation IE in the UDH */
#define CSMPP_SEG_PAYLOAD 3  /* one message, the whole text in message_payload */

#define CSMPP_NO_REPLACEMENT -1   /* `replacement`: strict, fail on the first unmappable char */
#define CSMPP_TEXT_INFO_LEN 2
#define CSMPP_SEG_INFO_LEN 8
#define CSMPP_SEG_PART_FIELDS 5
#define CSMPP_SEG_MAX_PARTS 255
#define CSMPP_SEG_MAX_PAYLOAD 65535

/* Upper bound of the octets csmpp_text_encode writes for n code points. */
size_t csmpp_text_encode_max_len(size_t n, int32_t enc);

/* Encode n code points.  single_lang / locking_lang select the GSM national language
 * single-shift and locking-shift tables (0 = default extension table / default alphabet;
 * must be 0 for the other encodings).  replacement: a code point written in place of each
 * unmappable character (it must itself be mappable), or CSMPP_NO_REPLACEMENT.
 * fill_bits (0-6, GSM7_PACKED only): zero bits before the first septet (after a UDH).
 * Packed output whose last octet would have 7 spare bits gets <CR> there (23.038 6.1.2.3.1).
 * info[0] = units written (septets, octets or UTF-16 code units), info[1] = the index of
 * the first unmappable code point or -1.
 * Returns the octets written, CSMPP_E_UNMAPPABLE, CSMPP_E_OUTPUT or CSMPP_E_ARG. */
int32_t csmpp_text_encode(const void *text, size_t n, int32_t width, int32_t enc,
                          int32_t single_lang, int32_t locking_lang, int32_t replacement,
                          int32_t fill_bits, uint8_t *out, size_t out_cap, int32_t *info);

/* Upper bound of the code points csmpp_text_decode writes for len octets. */
size_t csmpp_text_decode_max_len(size_t len, int32_t enc);

/* Decode len octets to code points (out, native uint32).  Never fails on bad data: an
 * octet that is not a character of the encoding (GSM > 0x7F or an unassigned position,
 * ASCII > 0x7F, a lone UTF-16 surrogate, an odd last UCS-2 octet) gives `replacement`.
 * GSM: <ESC> + a code the single-shift table lacks gives the main table's character,
 * <ESC><ESC> and a final lone <ESC> give a space.  GSM7_PACKED: fill_bits (0-6) are
 * skipped first; septets is the septet count, or -1 to take every whole septet (then a
 * <CR> filling 7 spare bits of the last octet is dropped).
 * Returns the code points written, CSMPP_E_OUTPUT or CSMPP_E_ARG. */
int32_t csmpp_text_decode(const uint8_t *data, size_t len, int32_t enc, int32_t single_lang,
                          int32_t locking_lang, int32_t fill_bits, int32_t septets,
                          uint32_t replacement, uint32_t *out, size_t out_cap);

/* Upper bound of the octets csmpp_seg_plan writes for n code points. */
size_t csmpp_seg_max_len(size_t n, int32_t method);

/* Plan and build the short messages for a whole text in one call.
 *
 * enc: an encoding, or CSMPP_ENC_AUTO: the cheapest (fewest parts, then fewest bits) of
 * the candidates allowed by auto_encs (bit 1 << CSMPP_ENC_x; the GSM7 and GSM7_PACKED
 * bits both admit GSM, PACKED selecting the packed form), tried in the order GSM default,
 * GSM with the national tables of the languages in auto_langs (bit 1 << language id:
 * single shift, locking shift, both), ASCII, Latin-1, UCS-2; ties go to the earlier one.
 * If no candidate carries the text, the first one is used with `replacement` (strict:
 * CSMPP_E_UNMAPPABLE at the first candidate's first unmappable character).
 *
 * A text that fits one message is one part with no concatenation data.  Otherwise each
 * part holds as many whole characters as fit (a GSM escape pair or a UTF-16 surrogate pair
 * is never split) in 140 octets / 160 septets less the UDH (SAR: less the UDH the SMSC will
 * send, with an 8-bit-reference concatenation IE: 153 septets), which carries the concatenation
 * IE (UDH8: 0x00, UDH16: 0x08, with `ref`), then the national language IEs (0x24 single
 * shift, 0x25 locking shift) and the application port IE (port_ie 8: 0x04, 16: 0x05, 0:
 * none; dst_port, src_port) - the same IEs in every part.  SAR puts no concatenation IE in
 * the UDH (the caller sets the sar_* TLVs from ref and the part numbers); PAYLOAD makes one
 * part of at most CSMPP_SEG_MAX_PAYLOAD octets.
 *
 * out gets each part's short_message (UDH then payload) one after another.  parts gets
 * CSMPP_SEG_PART_FIELDS int32 per part: offset in out, UDH length, short_message length,
 * first code point index, end code point index.  info (CSMPP_SEG_INFO_LEN int32): encoding,
 * single-shift language, locking-shift language, total units of the text, index of the
 * first unmappable code point (-1), parts needed, fill bits, UDH length of each part.
 *
 * Returns the number of parts, CSMPP_E_UNMAPPABLE, CSMPP_E_OUTPUT (out or parts too
 * small), CSMPP_E_INPUT (more than CSMPP_SEG_MAX_PARTS parts, or a PAYLOAD message over
 * CSMPP_SEG_MAX_PAYLOAD octets: info[5] says how many parts / octets) or CSMPP_E_ARG. */
int32_t csmpp_seg_plan(const void *text, size_t n, int32_t width, int32_t enc,
                       int32_t single_lang, int32_t locking_lang, uint32_t auto_encs,
                       uint32_t auto_langs, int32_t method, int32_t ref, int32_t port_ie,
                       int32_t dst_port, int32_t src_port, int32_t replacement, uint8_t *out,
                       size_t out_cap, int32_t *parts, size_t max_parts, int32_t *info);
/* The hot path of the Python face: csmpp_seg_plan with its settings in one array and its
 * results in one buffer, so that a call converts 7 arguments and the caller copies one
 * block of octets.
 *
 * Text: text1 (n octets, width 1) or, when text1 is NULL, text4 (n code points).
 * cfg (CSMPP_SEG_CFG_LEN int32): enc, single_lang, locking_lang, auto_encs, auto_langs,
 * method, port_ie, dst_port, src_port, replacement -- csmpp_seg_plan's arguments.
 * out (at least csmpp_seg_run_max_len(n, method) octets) gets, from its start:
 *   CSMPP_SEG_INFO_LEN int32 (native order): csmpp_seg_plan's info;
 *   then for the np parts four arrays of np int32: the offset in out of each part's
 *   short_message, the offset of its end, its first code point index, its end index;
 *   then the short messages one after another.
 * Returns the octets written (the info, the table and the messages), or an error code as
 * csmpp_seg_plan's (the info is written then too). */
#define CSMPP_SEG_CFG_LEN 10
#define CSMPP_SEG_HEAD 32
size_t csmpp_seg_run_max_len(size_t n, int32_t method);
int32_t csmpp_seg_run(const char *text1, const char32_t *text4, size_t n, int32_t ref,
                      const int32_t *cfg, uint8_t *out, size_t out_cap);
/* cdef:end */

#endif
