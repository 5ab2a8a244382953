"""RFC 6455 frame codec (relay/ws/frames.py): bytes in, events out, no sockets."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.ws.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Close,
    FrameReader,
    Message,
    Ping,
    Pong,
    ProtocolError,
    close_payload,
    encode_client_frame,
    encode_frame,
    encode_message,
    parse_close_payload,
    unmask,
    valid_close_code,
)

MAX = 1 << 20
MASK = b"\x37\xfa\x21\x3d"  # the masking key of the RFC 6455 section 5.7 examples


def server_reader(max_message_size: int = MAX) -> FrameReader:
    return FrameReader(masked=True, max_message_size=max_message_size)


def client_reader(max_message_size: int = MAX) -> FrameReader:
    return FrameReader(masked=False, max_message_size=max_message_size)


def cframe(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """A masked (client-to-server) frame."""
    return encode_frame(opcode, payload, MASK, fin)


def raw_header(b0: int, length: int, masked: bool = True) -> bytes:
    """A frame header with any length value, including ones encode_frame never writes."""
    mbit = 0x80 if masked else 0
    if length < 126:
        head = bytes((b0, mbit | length))
    elif length < 65536:
        head = bytes((b0, mbit | 126)) + struct.pack("!H", length)
    else:
        head = bytes((b0, mbit | 127)) + struct.pack("!Q", length)
    return head + (MASK if masked else b"")


def summary(events: list) -> list[tuple]:
    out: list[tuple] = []
    for e in events:
        if isinstance(e, Message):
            out.append(("msg", e.data))
        elif isinstance(e, Ping):
            out.append(("ping", e.payload))
        elif isinstance(e, Pong):
            out.append(("pong", e.payload))
        elif isinstance(e, Close):
            out.append(("close", e.code, e.reason))
        else:  # pragma: no cover - a new event type would need a new test
            raise AssertionError(f"unexpected event {e!r}")
    return out


def feed_chunks(reader: FrameReader, data: bytes, size: int) -> list:
    events: list = []
    for i in range(0, len(data), size):
        events.extend(reader.feed(data[i:i + size]))
    return events


def expect_error(reader: FrameReader, data: bytes, code: int) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        reader.feed(data)
    assert info.value.code == code, info.value.reason
    return info.value


# --- RFC 6455 section 5.7 examples ------------------------------------------------------

def test_rfc_example_masked_hello() -> None:
    frame = bytes.fromhex("818537fa213d7f9f4d5158")
    assert cframe(OP_TEXT, b"Hello") == frame
    assert summary(server_reader().feed(frame)) == [("msg", "Hello")]


def test_rfc_example_unmasked_frames() -> None:
    hello = bytes.fromhex("810548656c6c6f")
    fragmented = bytes.fromhex("010348656c") + bytes.fromhex("80026c6f")
    ping = bytes.fromhex("890548656c6c6f")
    assert encode_frame(OP_TEXT, b"Hello") == hello
    events = client_reader().feed(hello + fragmented + ping)
    assert summary(events) == [("msg", "Hello"), ("msg", "Hello"), ("ping", b"Hello")]


def test_rfc_example_masked_pong() -> None:
    frame = bytes.fromhex("8a8537fa213d7f9f4d5158")
    assert summary(server_reader().feed(frame)) == [("pong", b"Hello")]


def test_rfc_example_length_headers() -> None:
    assert encode_frame(OP_BINARY, bytes(256))[:4] == bytes.fromhex("827e0100")
    assert encode_frame(OP_BINARY, bytes(65536))[:10] == bytes.fromhex("827f0000000000010000")


# --- lengths ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("n", "len7"), [(0, 0), (125, 125), (126, 126), (65535, 126), (65536, 127)]
)
@pytest.mark.parametrize("kind", ["text", "binary"])
def test_masked_data_frame_lengths(n: int, len7: int, kind: str) -> None:
    data: str | bytes = "x" * n if kind == "text" else bytes(i & 0xFF for i in range(n))
    payload = data.encode() if isinstance(data, str) else data
    frame = cframe(OP_TEXT if kind == "text" else OP_BINARY, payload)
    assert frame[1] == 0x80 | len7  # 7-bit length, or the 16-bit / 64-bit marker
    assert summary(server_reader().feed(frame)) == [("msg", data)]
    # The same frame in uneven pieces gives the same message.
    assert summary(feed_chunks(server_reader(), frame, 4093)) == [("msg", data)]


def test_64bit_length_header_split_byte_by_byte() -> None:
    payload = bytes(range(256)) * 256  # 65536 bytes: 64-bit length
    frame = cframe(OP_BINARY, payload)
    reader = server_reader()
    for i in range(14):  # 2 + 8 length bytes + 4 mask bytes
        assert reader.feed(frame[i:i + 1]) == []
    assert reader.feed(frame[14:-1]) == []
    assert summary(reader.feed(frame[-1:])) == [("msg", payload)]


# --- chunking -------------------------------------------------------------------------------

def _stream() -> tuple[bytes, list[tuple]]:
    """Several frames of every kind, with the events they should produce."""
    frames = [
        cframe(OP_TEXT, "héllo €".encode()),
        cframe(OP_BINARY, b"\x00\x01\x02"),
        cframe(OP_PING, b"p1"),
        cframe(OP_TEXT, b""),
        cframe(OP_TEXT, b"frag", fin=False),
        cframe(OP_PONG, b""),
        cframe(OP_CONT, b"ment \xe2\x82", fin=False),  # "\u20ac" cut after 2 of its 3 bytes
        cframe(OP_CONT, b"\xac!", fin=True),
        cframe(OP_BINARY, bytes(range(200))),  # 16-bit length
        cframe(OP_BINARY, b"bin-", fin=False),
        cframe(OP_CONT, b"frag", fin=True),
        cframe(OP_CLOSE, close_payload(1000, "bye")),
    ]
    events = [
        ("msg", "héllo €"),
        ("msg", b"\x00\x01\x02"),
        ("ping", b"p1"),
        ("msg", ""),
        ("pong", b""),
        ("msg", "fragment \u20ac!"),
        ("msg", bytes(range(200))),
        ("msg", b"bin-frag"),
        ("close", 1000, "bye"),
    ]
    return b"".join(frames), events


def test_several_frames_in_one_feed() -> None:
    data, expected = _stream()
    reader = server_reader()
    assert summary(reader.feed(data)) == expected
    assert reader.buffered == 0


def test_one_byte_at_a_time() -> None:
    data, expected = _stream()
    assert summary(feed_chunks(server_reader(), data, 1)) == expected


def test_split_at_every_byte_boundary() -> None:
    data, expected = _stream()
    for i in range(len(data) + 1):
        reader = server_reader()
        events = reader.feed(data[:i]) + reader.feed(data[i:])
        assert summary(events) == expected, f"split at {i}"


def test_empty_feed_and_partial_frame_give_no_events() -> None:
    reader = server_reader()
    frame = cframe(OP_TEXT, b"abc")
    assert reader.feed(b"") == []
    assert reader.feed(frame[:-1]) == []
    assert reader.buffered == len(frame) - 1
    assert summary(reader.feed(frame[-1:])) == [("msg", "abc")]


# --- masking --------------------------------------------------------------------------------

def test_unmasked_client_frame_is_rejected_by_the_server() -> None:
    expect_error(server_reader(), encode_frame(OP_TEXT, b"hi"), 1002)


def test_masked_server_frame_is_rejected_by_the_client() -> None:
    expect_error(client_reader(), cframe(OP_TEXT, b"hi"), 1002)


def test_unmasked_control_frame_is_rejected_by_the_server() -> None:
    expect_error(server_reader(), encode_frame(OP_PING, b""), 1002)


# --- header bits and opcodes ------------------------------------------------------------------

@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10], ids=["rsv1", "rsv2", "rsv3"])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING])
def test_reserved_bits_are_rejected(rsv: int, opcode: int) -> None:
    frame = bytearray(cframe(opcode, b"x"))
    frame[0] |= rsv
    expect_error(server_reader(), bytes(frame), 1002)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes_are_rejected(opcode: int) -> None:
    expect_error(server_reader(), cframe(opcode, b"x"), 1002)
    expect_error(client_reader(), encode_frame(opcode, b""), 1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_control_frame_payload_over_125_is_rejected(opcode: int) -> None:
    payload = b"\x03\xe8" + b"x" * 124  # 126 bytes (a valid close code for OP_CLOSE)
    expect_error(server_reader(), cframe(opcode, payload), 1002)


def test_control_frame_payload_of_125_is_accepted() -> None:
    assert summary(server_reader().feed(cframe(OP_PING, b"p" * 125))) == [("ping", b"p" * 125)]


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_fragmented_control_frame_is_rejected(opcode: int) -> None:
    expect_error(server_reader(), cframe(opcode, b"", fin=False), 1002)


def test_64bit_length_with_top_bit_set_is_rejected() -> None:
    reader = server_reader(max_message_size=1 << 64)  # only the top bit can be at fault
    expect_error(reader, raw_header(0x80 | OP_BINARY, 1 << 63)[:10], 1002)
    reader = server_reader(max_message_size=1 << 64)
    expect_error(reader, raw_header(0x80 | OP_BINARY, (1 << 64) - 1)[:10], 1002)


# --- fragmentation --------------------------------------------------------------------------

def test_continuation_with_no_message_started() -> None:
    expect_error(server_reader(), cframe(OP_CONT, b"x"), 1002)
    expect_error(server_reader(), cframe(OP_CONT, b"x", fin=False), 1002)


def test_continuation_after_a_finished_message() -> None:
    data = cframe(OP_TEXT, b"a", fin=False) + cframe(OP_CONT, b"b") + cframe(OP_CONT, b"c")
    err = expect_error(server_reader(), data, 1002)
    assert summary(err.events) == [("msg", "ab")]


@pytest.mark.parametrize("first", [OP_TEXT, OP_BINARY])
@pytest.mark.parametrize("second", [OP_TEXT, OP_BINARY])
def test_new_data_frame_inside_a_fragmented_message(first: int, second: int) -> None:
    data = cframe(first, b"a", fin=False) + cframe(second, b"b")
    expect_error(server_reader(), data, 1002)


def test_fragmented_text_with_interleaved_ping() -> None:
    data = (cframe(OP_TEXT, b"Hel", fin=False) + cframe(OP_PING, b"!")
            + cframe(OP_CONT, b"lo", fin=False) + cframe(OP_CONT, b"", fin=True))
    events = server_reader().feed(data)
    assert summary(events) == [("ping", b"!"), ("msg", "Hello")]
    assert isinstance(events[1].data, str)


def test_fragmented_binary_with_interleaved_ping() -> None:
    data = (cframe(OP_BINARY, b"\x00\x01", fin=False) + cframe(OP_PING, b"")
            + cframe(OP_CONT, b"\x02", fin=True))
    events = server_reader().feed(data)
    assert summary(events) == [("ping", b""), ("msg", b"\x00\x01\x02")]
    assert isinstance(events[1].data, bytes)


def test_close_inside_a_fragmented_message() -> None:
    data = cframe(OP_TEXT, b"a", fin=False) + cframe(OP_CLOSE, close_payload(1001))
    assert summary(server_reader().feed(data)) == [("close", 1001, "")]


def test_fragmented_message_in_separate_feeds() -> None:
    reader = server_reader()
    assert reader.feed(cframe(OP_TEXT, b"ab", fin=False)) == []
    assert summary(reader.feed(cframe(OP_PING, b"x"))) == [("ping", b"x")]
    assert summary(reader.feed(cframe(OP_CONT, b"cd"))) == [("msg", "abcd")]
    # The reader is ready for a new message afterwards.
    assert summary(reader.feed(cframe(OP_BINARY, b"ef"))) == [("msg", b"ef")]


# --- UTF-8 ----------------------------------------------------------------------------------

BAD_UTF8 = [
    b"\xff",
    b"\xc3\x28",  # bad continuation byte
    b"\xc0\xaf",  # overlong "/"
    b"\xed\xa0\x80",  # UTF-16 surrogate
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"ok\xe2\x82",  # truncated at the end
]


@pytest.mark.parametrize("payload", BAD_UTF8)
def test_invalid_utf8_text_frame(payload: bytes) -> None:
    expect_error(server_reader(), cframe(OP_TEXT, payload), 1007)


def test_binary_frame_is_not_utf8_checked() -> None:
    data = b"".join(cframe(OP_BINARY, p) for p in BAD_UTF8)
    assert summary(server_reader().feed(data)) == [("msg", p) for p in BAD_UTF8]


def test_invalid_utf8_split_across_fragments() -> None:
    # \xf0\x9f starts a 4-byte character; "(" cannot continue it.
    data = cframe(OP_TEXT, b"ab\xf0\x9f", fin=False) + cframe(OP_CONT, b"(cd")
    expect_error(server_reader(), data, 1007)


def test_truncated_character_at_end_of_fragmented_text() -> None:
    data = cframe(OP_TEXT, b"ab\xe2\x82", fin=False) + cframe(OP_CONT, b"", fin=True)
    expect_error(server_reader(), data, 1007)


def test_invalid_utf8_in_first_fragment_fails_without_waiting_for_the_end() -> None:
    expect_error(server_reader(), cframe(OP_TEXT, b"ok\xff", fin=False), 1007)


@pytest.mark.parametrize("char", ["\u00e9", "\u20ac", "\U0001f600"])
def test_valid_multibyte_character_split_across_fragments(char: str) -> None:
    raw = char.encode()
    parts = [raw[i:i + 1] for i in range(len(raw))]  # one byte per fragment
    data = cframe(OP_TEXT, b"<" + parts[0], fin=False)
    data += b"".join(cframe(OP_CONT, p, fin=False) for p in parts[1:])
    data += cframe(OP_CONT, b">", fin=True)
    assert summary(server_reader().feed(data)) == [("msg", f"<{char}>")]


# --- size limit -----------------------------------------------------------------------------

def test_message_at_the_limit_is_accepted() -> None:
    frame = cframe(OP_BINARY, bytes(1000))
    assert summary(server_reader(1000).feed(frame)) == [("msg", bytes(1000))]


def test_single_frame_over_the_limit() -> None:
    expect_error(server_reader(1000), cframe(OP_BINARY, bytes(1001)), 1009)


@pytest.mark.parametrize("length", [1 << 40, (1 << 63) - 1, 70000])
def test_huge_frame_is_rejected_from_its_header_alone(length: int) -> None:
    # Only the 10 header bytes arrive: no mask key, no payload.
    header = raw_header(0x80 | OP_TEXT, length)[:10]
    expect_error(server_reader(65536), header, 1009)


def test_16bit_frame_over_the_limit_is_rejected_from_its_header() -> None:
    expect_error(server_reader(100), raw_header(0x80 | OP_BINARY, 200)[:4], 1009)


def test_fragments_summing_over_the_limit() -> None:
    reader = server_reader(1000)
    assert reader.feed(cframe(OP_BINARY, bytes(600), fin=False)) == []
    # The second fragment is refused as soon as its header shows the total would be 1200.
    err = expect_error(reader, cframe(OP_PING, b"x") + raw_header(OP_CONT, 600)[:4], 1009)
    assert summary(err.events) == [("ping", b"x")]


def test_fragments_summing_to_the_limit_are_accepted() -> None:
    data = (cframe(OP_TEXT, b"a" * 600, fin=False) + cframe(OP_PING, b"p" * 125)
            + cframe(OP_CONT, b"b" * 400, fin=True))
    assert summary(server_reader(1000).feed(data)) == [("ping", b"p" * 125),
                                                         ("msg", "a" * 600 + "b" * 400)]


# --- close frames ---------------------------------------------------------------------------

def test_close_with_empty_payload_is_1005() -> None:
    assert summary(server_reader().feed(cframe(OP_CLOSE, b""))) == [("close", 1005, "")]
    close = parse_close_payload(b"")
    assert (close.code, close.reason) == (1005, "")


def test_close_with_one_byte_payload() -> None:
    expect_error(server_reader(), cframe(OP_CLOSE, b"\x03"), 1002)
    with pytest.raises(ProtocolError) as info:
        parse_close_payload(b"\x03")
    assert info.value.code == 1002


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])
def test_close_with_invalid_code(code: int) -> None:
    assert not valid_close_code(code)
    expect_error(server_reader(), cframe(OP_CLOSE, struct.pack("!H", code) + b"r"), 1002)


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                                  3000, 4999])
def test_close_with_valid_code_and_reason(code: int) -> None:
    assert valid_close_code(code)
    frame = cframe(OP_CLOSE, struct.pack("!H", code) + "bye ü".encode())
    assert summary(server_reader().feed(frame)) == [("close", code, "bye ü")]


def test_close_with_code_and_no_reason() -> None:
    assert summary(server_reader().feed(cframe(OP_CLOSE, b"\x03\xe8"))) == [("close", 1000, "")]


def test_close_reason_not_utf8() -> None:
    expect_error(server_reader(), cframe(OP_CLOSE, b"\x03\xe8\xff\xfe"), 1007)


# --- ProtocolError.events -------------------------------------------------------------------

def test_protocol_error_keeps_earlier_events() -> None:
    data = (cframe(OP_TEXT, b"one") + cframe(OP_BINARY, b"two") + cframe(OP_PING, b"3")
            + cframe(OP_TEXT, b"fr", fin=False)  # incomplete message: not an event
            + encode_frame(OP_CONT, b"ag"))  # unmasked: the violation
    err = expect_error(server_reader(), data, 1002)
    assert summary(err.events) == [("msg", "one"), ("msg", b"two"), ("ping", b"3")]


def test_protocol_error_events_only_from_the_failing_feed() -> None:
    reader = server_reader()
    assert summary(reader.feed(cframe(OP_TEXT, b"old"))) == [("msg", "old")]
    err = expect_error(reader, cframe(OP_TEXT, b"new") + cframe(OP_TEXT, b"\xff"), 1007)
    assert summary(err.events) == [("msg", "new")]


def test_protocol_error_with_no_earlier_events() -> None:
    err = expect_error(server_reader(), cframe(0x3, b""), 1002)
    assert err.events == []
    assert err.reason and str(err) == err.reason


# --- encoding -------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 125, 126, 65535, 65536])
def test_encode_frame_round_trips_through_a_client_reader(n: int) -> None:
    payload = bytes(i * 7 & 0xFF for i in range(n))
    text = "é" * (n // 2)
    data = (encode_frame(OP_BINARY, payload) + encode_frame(OP_TEXT, text.encode())
            + encode_frame(OP_PING, payload[:125]) + encode_frame(OP_PONG, payload[:3])
            + encode_frame(OP_CLOSE, close_payload(1001, "away")))
    assert summary(client_reader().feed(data)) == [
        ("msg", payload), ("msg", text), ("ping", payload[:125]), ("pong", payload[:3]),
        ("close", 1001, "away"),
    ]


def test_encode_frame_fragments_round_trip() -> None:
    data = (encode_frame(OP_TEXT, b"ab", fin=False) + encode_frame(OP_PING, b"")
            + encode_frame(OP_CONT, b"cd", fin=False) + encode_frame(OP_CONT, b"e"))
    assert summary(client_reader().feed(data)) == [("ping", b""), ("msg", "abcde")]


def test_encode_message() -> None:
    assert encode_message("hé") == encode_frame(OP_TEXT, "hé".encode())
    assert encode_message(b"\x00") == encode_frame(OP_BINARY, b"\x00")
    events = client_reader().feed(encode_message("hé") + encode_message(b"\x00"))
    assert summary(events) == [("msg", "hé"), ("msg", b"\x00")]


def test_encode_client_frame_is_masked_and_round_trips() -> None:
    frame = encode_client_frame(OP_BINARY, b"payload")
    assert frame[1] & 0x80
    assert summary(server_reader().feed(frame)) == [("msg", b"payload")]
    frag = encode_client_frame(OP_TEXT, b"a", fin=False) + encode_client_frame(OP_CONT, b"b")
    assert summary(server_reader().feed(frag)) == [("msg", "ab")]


def test_close_payload_basic() -> None:
    assert close_payload(1000) == b"\x03\xe8"
    assert close_payload(1000, "bye") == b"\x03\xe8bye"
    assert close_payload(1005, "ignored") == b""


@pytest.mark.parametrize("reason", [
    "x" * 200,
    "é" * 100,  # 2-byte characters: 123 is odd, so a cut would land mid-character
    "a" + "€" * 60,  # 3-byte characters after one ASCII byte
    "€" * 60,
    "\U0001f600" * 40,  # 4-byte characters
    "ab" + "\U0001f600" * 40,
])
def test_close_payload_truncates_long_reason_on_a_character_boundary(reason: str) -> None:
    payload = close_payload(1001, reason)
    assert len(payload) <= 125
    assert payload[:2] == b"\x03\xe9"
    kept = payload[2:].decode()  # must not raise
    assert reason.startswith(kept)
    assert len(payload) > 125 - 4  # at most one partial character (< 4 bytes) dropped
    assert summary(client_reader().feed(encode_frame(OP_CLOSE, payload))) == [
        ("close", 1001, kept)
    ]


def test_unmask_rfc_example() -> None:
    assert unmask(b"Hello", MASK) == bytes.fromhex("7f9f4d5158")
    assert unmask(bytes.fromhex("7f9f4d5158"), MASK) == b"Hello"
    assert unmask(b"", MASK) == b""


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=300), mask=st.binary(min_size=4, max_size=4))
def test_unmask_is_its_own_inverse(payload: bytes, mask: bytes) -> None:
    masked = unmask(payload, mask)
    assert len(masked) == len(payload)
    assert unmask(masked, mask) == payload
    assert masked == bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
