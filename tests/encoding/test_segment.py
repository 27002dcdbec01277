"""Segmentation (csmpp_seg_plan through encoding.segment): boundaries, UDHs, the automatic
choice, properties under hypothesis, the slow reference, and smpplib's make_parts."""

from __future__ import annotations

import pytest
import smpplib.consts
import smpplib.gsm
from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_smpp.encoding import (
    DEFAULT_POLICY,
    Alphabet,
    Encoding,
    NationalLanguage,
    Part,
    SegmentationError,
    SegmentMethod,
    TextPolicy,
    UnencodableCharacterError,
    decode,
    gsm_table,
    segment,
)
from tests.encoding import reference as ref

L = NationalLanguage
E = Encoding
M = SegmentMethod
SETTINGS = settings(max_examples=120, deadline=None)

GSM_BASIC = "".join(ch for ch in gsm_table(L.DEFAULT, shift=False) if ch)
GSM_EXT = "".join(ch for ch in gsm_table(L.DEFAULT, shift=True) if ch)
TURKISH = "ğĞıİşŞçÇ"
HINDI = "".join(ch for ch in gsm_table(L.HINDI, shift=False) if ch and ord(ch) > 0x900)
EMOJI = "😀👍🏽🎉🇪🇺"


def payload_sizes(text: str, policy: TextPolicy = DEFAULT_POLICY, **kw: object) -> list[int]:
    return [len(p.payload) for p in segment(text, policy=policy, **kw).parts]  # type: ignore[arg-type]


def part_text(p: Part, enc: Encoding, single: L, locking: L, fill: int) -> str:
    if enc is E.GSM7_PACKED:
        return decode(p.payload, enc, single_shift=single, locking_shift=locking, fill_bits=fill)
    if enc.is_gsm:
        return decode(p.payload, enc, single_shift=single, locking_shift=locking)
    return decode(p.payload, enc)


# --- boundaries ---------------------------------------------------------------------------


def test_gsm_single_and_multi_part_limits() -> None:
    assert payload_sizes("a" * 160) == [160]
    assert payload_sizes("a" * 161) == [153, 8]
    assert payload_sizes("a" * 306) == [153, 153]
    assert payload_sizes("a" * 307) == [153, 153, 1]
    one = segment("a" * 160).parts[0]
    assert (one.udh, one.esm_class, one.data_coding) == (b"", 0, 0)


def test_euro_at_part_boundaries() -> None:
    # 158 + € = 160 septets: one message; 159 + € = 161: two
    assert payload_sizes("a" * 158 + "€") == [160]
    assert payload_sizes("a" * 159 + "€") == [153, 8]
    # € as septets 152-153 of the first part: exactly fits
    seg = segment("a" * 151 + "€" + "b" * 10)
    assert [len(p.payload) for p in seg.parts] == [153, 10]
    assert seg.parts[0].payload.endswith(b"\x1be")
    # € would straddle septets 153/154: it moves whole to the next part
    seg = segment("a" * 152 + "€" + "b" * 10)
    assert [len(p.payload) for p in seg.parts] == [152, 12]
    assert seg.parts[1].payload.startswith(b"\x1be")
    assert [(p.text_start, p.text_end) for p in seg.parts] == [(0, 152), (152, 163)]
    # every extension character, placed at the boundary
    for ch in GSM_EXT:
        seg = segment("x" * 152 + ch + "y" * 200)
        assert seg.parts[0].payload == b"x" * 152
        assert not seg.parts[0].payload.endswith(b"\x1b")


def test_ucs2_limits_and_surrogate_pairs() -> None:
    assert payload_sizes("字" * 70) == [140]
    assert payload_sizes("字" * 71) == [134, 8]
    assert payload_sizes("字" * 69 + "😀") == [134, 8]  # 71 units
    assert payload_sizes("字" * 68 + "😀") == [140]  # 70 units
    seg = segment("字" * 66 + "😀" + "字" * 3)  # 71 units
    assert [len(p.payload) for p in seg.parts] == [132, 10]  # the pair is not cut at unit 67
    assert seg.encoding is E.UCS2 and seg.data_coding == 0x08
    assert decode(seg.parts[1].payload, E.UCS2) == "😀字字字"


def test_octet_limits() -> None:
    policy = TextPolicy(default_alphabet=Alphabet.LATIN1)
    assert payload_sizes("é" * 140, policy) == [140]
    assert payload_sizes("é" * 141, policy) == [134, 7]
    seg = segment("é" * 141, policy=policy)
    assert seg.encoding is E.LATIN1 and seg.data_coding == 0x00
    assert segment("é", encoding=E.LATIN1).data_coding == 0x03


def test_udh8_udh16_headers() -> None:
    seg = segment("a" * 200, ref=0xAB)
    assert [p.udh for p in seg.parts] == [bytes.fromhex("050003AB0201"), bytes.fromhex("050003AB0202")]
    assert all(p.esm_class == 0x40 for p in seg.parts)
    seg = segment("a" * 200, ref=0x1234, method=M.UDH16)
    assert [p.udh for p in seg.parts] == [bytes([6, 0x08, 4, 0x12, 0x34, 2, i]) for i in (1, 2)]
    assert [len(p.payload) for p in seg.parts] == [152, 48]
    with pytest.raises(ValueError):
        segment("a" * 200, ref=256)
    with pytest.raises(ValueError):
        segment("a", ref=256)  # checked even when the text fits one message


def test_sar() -> None:
    seg = segment("a" * 200, ref=0x1234, method=M.SAR)
    assert [(p.udh, p.esm_class) for p in seg.parts] == [(b"", 0), (b"", 0)]
    assert [(p.sar_msg_ref_num, p.sar_total_segments, p.sar_segment_seqnum) for p in seg.parts] == [
        (0x1234, 2, 1),
        (0x1234, 2, 2),
    ]
    assert [len(p.payload) for p in seg.parts] == [153, 47]  # room for the SMSC's UDH
    lone = segment("a", method=M.SAR).parts[0]
    assert lone.sar_msg_ref_num is None


def test_message_payload() -> None:
    seg = segment("a" * 1000 + "€", method=M.PAYLOAD)
    assert seg.use_message_payload and len(seg.parts) == 1
    assert seg.parts[0].payload == b"a" * 1000 + b"\x1be"
    with pytest.raises(SegmentationError):
        segment("字" * 40000, method=M.PAYLOAD)


def test_too_many_parts() -> None:
    assert len(segment("a" * 153 * 255).parts) == 255
    with pytest.raises(SegmentationError, match="256 parts"):
        segment("a" * (153 * 255 + 1))


def test_ports() -> None:
    seg = segment("a" * 200, ref=1, ports=(0xF5, 0xF6))
    assert seg.parts[0].udh == bytes.fromhex("0900030102010402F5F6")
    # UDH of 10 octets: (1120 - 80) / 7 = 148 septets
    assert [len(p.payload) for p in seg.parts] == [148, 52]
    seg = segment("hello", ports=(2948, 9200))
    assert seg.parts[0].udh == bytes([6, 0x05, 4, 0x0B, 0x84, 0x23, 0xF0])
    assert seg.parts[0].esm_class == 0x40 and seg.parts[0].payload == b"hello"
    seg = segment("hi", ports=(1, 2), port_ie_16bit=True)
    assert seg.parts[0].udh == bytes([6, 0x05, 4, 0, 1, 0, 2])


def test_national_shift_ies_in_every_part() -> None:
    policy = TextPolicy(national_languages=frozenset({L.TURKISH}))
    text = "Şişli " * 50  # 300 characters
    seg = segment(text, ref=9, policy=policy)
    assert seg.encoding is E.GSM7 and seg.data_coding == 0
    assert (seg.single_shift, seg.locking_shift) == (L.DEFAULT, L.TURKISH)
    # UDH: concat (5) + locking shift IE (3) + UDHL = 9 octets -> (1120 - 72) / 7 = 149
    assert [p.udh for p in seg.parts] == [bytes([8, 0, 3, 9, 3, i, 0x25, 1, 1]) for i in (1, 2, 3)]
    assert [len(p.payload) for p in seg.parts] == [149, 149, 2]
    assert "".join(decode(p.payload, locking_shift=L.TURKISH) for p in seg.parts) == text
    # without the national tables it is UCS-2
    assert segment(text).encoding is E.UCS2


def test_national_single_shift_only() -> None:
    policy = TextPolicy(national_languages=frozenset({L.SPANISH}))
    seg = segment("¿Qué tal? Mañana á é í ó ú ç", policy=policy)
    assert (seg.encoding, seg.single_shift, seg.locking_shift) == (E.GSM7, L.SPANISH, L.DEFAULT)
    assert seg.parts[0].udh == bytes([3, 0x24, 1, 2])


def test_portuguese_locking_shift_beats_escapes() -> None:
    # 200 euro signs: 400 septets (3 parts) with escapes, 200 (2 parts) with the locking table
    policy = TextPolicy(national_languages=frozenset({L.PORTUGUESE}))
    seg = segment("€" * 200, policy=policy)
    assert (seg.locking_shift, len(seg.parts)) == (L.PORTUGUESE, 2)
    assert len(segment("€" * 200).parts) == 3


def test_hindi() -> None:
    policy = TextPolicy(national_languages=frozenset({L.HINDI}))
    text = "नमस्ते दुनिया, कैसे हो? १२३" * 8
    seg = segment(text, policy=policy)
    assert (seg.encoding, seg.single_shift, seg.locking_shift) == (E.GSM7, L.HINDI, L.HINDI)
    assert "".join(part_text(p, seg.encoding, L.HINDI, L.HINDI, 0) for p in seg.parts) == text
    assert len(seg.parts) < len(segment(text).parts)


def test_emoji_mixed_text_auto_ucs2() -> None:
    text = "Hi 😀 " * 30
    seg = segment(text)
    assert seg.encoding is E.UCS2
    assert "".join(decode(p.payload, E.UCS2) for p in seg.parts) == text


def test_packed_parts_have_fill_bits() -> None:
    seg = segment("a" * 200, policy=TextPolicy(gsm_packed=True))
    assert seg.encoding is E.GSM7_PACKED and seg.fill_bits == 1
    # part 2: 6-octet UDH + 1 fill bit + 47 septets (330 bits: 42 octets)
    assert [len(p.udh) + len(p.payload) for p in seg.parts] == [140, 48]
    assert seg.parts[0].payload[0] == (ord("a") << 1) & 0xFF
    assert "".join(decode(p.payload, E.GSM7_PACKED, fill_bits=1) for p in seg.parts) == "a" * 200


def test_policy_default_alphabets_and_strictness() -> None:
    latin = TextPolicy(default_alphabet=Alphabet.LATIN1)
    assert segment("café", policy=latin).encoding is E.LATIN1
    assert segment("€", policy=latin).encoding is E.UCS2
    ia5 = TextPolicy(default_alphabet=Alphabet.IA5)
    assert (segment("abc", policy=ia5).encoding, segment("abc", policy=ia5).data_coding) == (E.ASCII, 0)
    no_ucs2 = TextPolicy(allow_ucs2=False)
    with pytest.raises(UnencodableCharacterError) as info:
        segment("ok 字", policy=no_ucs2)
    assert (info.value.char, info.value.position) == ("字", 3)
    seg = segment("ok 字", policy=TextPolicy(allow_ucs2=False, errors="replace"))
    assert seg.parts[0].payload == b"ok ?"
    with pytest.raises(ValueError, match=r"GSM 03\.38"):
        segment("a", encoding=E.GSM7, policy=latin)
    with pytest.raises(UnencodableCharacterError):
        segment("字", encoding=E.GSM7)


def test_empty_text() -> None:
    seg = segment("")
    assert [(p.udh, p.payload) for p in seg.parts] == [(b"", b"")]
    assert segment("", policy=TextPolicy(gsm_packed=True), ports=(1, 2)).parts[0].payload == b""


# --- properties ------------------------------------------------------------------------------

ALPHABET = GSM_BASIC + GSM_EXT + TURKISH + HINDI + EMOJI + "字éâ"
texts = st.one_of(
    st.text(alphabet=st.sampled_from(ALPHABET), max_size=500),
    st.text(alphabet=st.sampled_from(GSM_BASIC + GSM_EXT), min_size=140, max_size=700),
    st.text(alphabet=st.sampled_from("字😀a"), max_size=300),
    st.text(max_size=200),
)
policies = st.builds(
    TextPolicy,
    default_alphabet=st.sampled_from([Alphabet.GSM7, Alphabet.LATIN1, Alphabet.IA5]),
    gsm_packed=st.booleans(),
    national_languages=st.frozensets(
        st.sampled_from([L.TURKISH, L.SPANISH, L.PORTUGUESE, L.HINDI]), max_size=2
    ),
    allow_latin1=st.booleans(),
    allow_ascii=st.booleans(),
    segment_method=st.sampled_from(list(M)),
)
port_choice = st.one_of(st.none(), st.tuples(st.integers(0, 255), st.integers(0, 255)),
                        st.tuples(st.integers(0, 65535), st.integers(0, 65535)))  # fmt: skip


def check_fits(p: Part, enc: Encoding, method: SegmentMethod) -> None:
    if method is M.PAYLOAD:
        return
    if enc is E.GSM7:
        assert 8 * len(p.udh) + 7 * len(p.payload) <= 1120
    else:
        assert len(p.udh) + len(p.payload) <= 140


@SETTINGS
@given(texts, policies, st.integers(0, 255), port_choice)
def test_segment_properties(
    text: str, policy: TextPolicy, ref_num: int, ports: tuple[int, int] | None
) -> None:
    seg = segment(text, ref=ref_num, policy=policy, ports=ports)  # UCS-2 is allowed: never unencodable
    enc = seg.encoding
    total = len(seg.parts)
    assert 1 <= total <= 255
    assert seg.parts[0].text_start == 0 and seg.parts[-1].text_end == len(text)
    decoded = []
    for i, p in enumerate(seg.parts, 1):
        check_fits(p, enc, seg.method)
        assert p.esm_class == (0x40 if p.udh else 0)
        if total > 1 and seg.method is M.UDH8:
            assert p.udh[1:6] == bytes([0x00, 3, ref_num, total, i])
        if total > 1 and seg.method is M.SAR:
            assert (p.sar_msg_ref_num, p.sar_total_segments, p.sar_segment_seqnum) == (ref_num, total, i)
        if enc is E.GSM7:
            assert not p.payload.endswith(b"\x1b")
        if enc is E.UCS2:
            assert len(p.payload) % 2 == 0
            if p.payload:
                assert not 0xD8 <= p.payload[-2] <= 0xDB  # no lone high surrogate at the end
                assert not 0xDC <= p.payload[0] <= 0xDF  # no lone low surrogate at the start
        piece = part_text(p, enc, seg.single_shift, seg.locking_shift, seg.fill_bits)
        assert piece == text[p.text_start : p.text_end]
        decoded.append(piece)
    assert "".join(decoded) == text


def _c_plan(text: str, **kw: object) -> object:
    try:
        seg = segment(text, **kw)  # type: ignore[arg-type]
    except UnencodableCharacterError as exc:
        return ("unmappable", exc.position)
    except SegmentationError:
        return "too many parts"
    return (
        int(seg.encoding),
        int(seg.single_shift),
        int(seg.locking_shift),
        seg.units,
        seg.fill_bits,
        [(p.udh, p.payload, p.text_start, p.text_end) for p in seg.parts],
    )


def _ref_plan(text: str, *args: object, **kw: object) -> object:
    try:
        plan = ref.ref_segment(text, *args, **kw)  # type: ignore[arg-type]
    except ref.RefUnmappable as exc:
        return ("unmappable", exc.position)
    except ref.RefTooManyParts:
        return "too many parts"
    return (
        plan.enc,
        plan.single,
        plan.locking,
        plan.total_units,
        plan.fill_bits,
        [(p.udh, p.payload, p.start, p.end) for p in plan.parts],
    )


@SETTINGS
@given(texts, policies, st.integers(0, 255), port_choice, st.booleans(), st.booleans())
def test_auto_plan_matches_reference(
    text: str, policy: TextPolicy, ref_num: int, ports: tuple[int, int] | None, strict: bool, ucs2: bool
) -> None:
    policy = TextPolicy(
        default_alphabet=policy.default_alphabet,
        gsm_packed=policy.gsm_packed,
        national_languages=policy.national_languages,
        allow_latin1=policy.allow_latin1,
        allow_ascii=policy.allow_ascii,
        allow_ucs2=ucs2,
        segment_method=policy.segment_method,
        errors="strict" if strict else "replace",
    )
    port_ie, dst, src = 0, 0, 0
    if ports is not None:
        dst, src = ports
        port_ie = 16 if max(ports) > 255 else 8
    want = _ref_plan(
        text, ref.AUTO, 0, 0, policy.auto_encodings(), policy.language_mask(), int(policy.segment_method),
        ref_num, port_ie, dst, src, None if strict else "?",
    )  # fmt: skip
    assert _c_plan(text, ref=ref_num, policy=policy, ports=ports) == want


@SETTINGS
@given(
    texts,
    st.sampled_from([E.GSM7, E.GSM7_PACKED, E.LATIN1, E.ASCII, E.UCS2]),
    st.tuples(st.sampled_from(list(L)), st.sampled_from([lang for lang in L if lang.has_locking_shift])),
    st.sampled_from([M.UDH8, M.UDH16, M.SAR]),
    st.integers(0, 255),
    st.sampled_from([None, "?"]),
)
def test_explicit_plan_matches_reference(
    text: str, enc: Encoding, langs: tuple[L, L], method: SegmentMethod, ref_num: int, repl: str | None
) -> None:
    single, locking = langs if enc.is_gsm else (L.DEFAULT, L.DEFAULT)
    policy = TextPolicy(errors="strict" if repl is None else "replace")
    got = _c_plan(text, ref=ref_num, policy=policy, encoding=enc, single_shift=single, locking_shift=locking,
                  method=method)  # fmt: skip
    want = _ref_plan(text, int(enc), int(single), int(locking), 0, 0, int(method), ref_num, 0, 0, 0, repl)
    assert got == want


# --- smpplib's make_parts ----------------------------------------------------------------------

SMPPLIB_GSM_SAFE = "".join(ch for ch in GSM_BASIC if ch not in "§\x1b")  # see the deviations below


def smpplib_parts(text: str) -> tuple[list[bytes], int]:
    parts, encoding, _esm = smpplib.gsm.make_parts(text)
    return parts, encoding


def mask_ref(sm: bytes) -> bytes:
    """smpplib draws a random 8-bit reference: compare with it zeroed."""
    return sm[:3] + b"\x00" + sm[4:] if sm[:3] == b"\x05\x00\x03" else sm


@SETTINGS
@given(
    st.one_of(
        st.text(alphabet=st.sampled_from(SMPPLIB_GSM_SAFE), max_size=700),
        st.text(alphabet=st.sampled_from("字éâ" + SMPPLIB_GSM_SAFE), max_size=300),
    )
)
def test_agrees_with_smpplib_where_smpplib_is_right(text: str) -> None:
    """GSM texts without extension characters, and BMP-only UCS-2 texts: the same parts."""
    theirs, their_enc = smpplib_parts(text)
    seg = segment(text, ref=0)
    assert their_enc == (smpplib.consts.SMPP_ENCODING_DEFAULT if seg.encoding is E.GSM7 else
                         smpplib.consts.SMPP_ENCODING_ISO10646)  # fmt: skip
    assert [mask_ref(sm) for sm in theirs] == [p.short_message for p in seg.parts]


def test_smpplib_deviation_cuts_gsm_escape_pair() -> None:
    """DEVIATION (smpplib 2.2.4): make_parts splits the encoded octets every 153, cutting
    the escape pair of an extension character at the part boundary."""
    text = "a" * 152 + "€" + "b" * 10
    theirs, _ = smpplib_parts(text)
    assert theirs[0].endswith(b"\x1b")  # their part 1 ends in a lone ESC
    assert theirs[1][6:7] == b"e"
    ours = segment(text).parts
    assert ours[0].payload == b"a" * 152 and ours[1].payload.startswith(b"\x1be")


def test_smpplib_deviation_cuts_surrogate_pair() -> None:
    """DEVIATION (smpplib 2.2.4): UCS-2 is split every 134 octets, cutting a surrogate pair."""
    text = "字" * 66 + "😀" + "字" * 10
    theirs, _ = smpplib_parts(text)
    assert 0xD8 <= theirs[0][-2] <= 0xDB  # their part 1 ends in a lone high surrogate
    ours = segment(text).parts
    assert len(ours[0].payload) == 132 and decode(ours[1].payload, E.UCS2).startswith("😀")


def test_smpplib_deviation_section_sign_and_backtick() -> None:
    """DEVIATION (smpplib 2.2.4): its GSM table has '`' at 0x5F (GSM '§') and no '§', so '§'
    falls back to UCS-2 and '`' is sent as '§'.  '`' is not in the GSM alphabet."""
    parts, enc = smpplib_parts("§")
    assert enc == smpplib.consts.SMPP_ENCODING_ISO10646
    assert segment("§").parts[0].payload == b"\x5f"
    parts, enc = smpplib_parts("`")
    assert (parts, enc) == ([b"\x5f"], smpplib.consts.SMPP_ENCODING_DEFAULT)
    assert decode(b"\x5f") == "§"
    assert segment("`").encoding is E.UCS2
