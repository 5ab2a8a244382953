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
        cframe(OP_CONT, "ment \xe2".encode()[:-1], fin=False),
        cframe(OP_CONT, "\u20ac".encode(), fin=True),
        cframe(OP_BINARY, bytes(range(200))),  # 16-bit length
        cframe(OP_CLOSE, close_payload(1000, "bye")),
    ]
    events = [
        ("msg", "héllo €"),
        ("msg", b"\x00\x01\x02"),
        ("ping", b"p1"),
        ("msg", ""),
        ("pong", b""),
        ("msg", "fragment \u00c3\u20ac"[:0] + "fragment " + "\u00e2"[:0] + "\u20ac"),
        ("msg", bytes(range(200))),
        ("close", 1000, "bye"),
    ]
    return b"".join(frames), events


def test_stream_helper_is_consistent() -> None:
    # "ment \xe2" encoded, minus its last byte, is "ment \xc3": the cut is mid-character.
    assert "ment \xe2".encode()[:-1] == b"ment \xc3"
    data, expected = _stream()
    # ...so the third fragment joins the \xc3 byte with a continuation-looking byte? No:
    # the reader must decode the concatenated payload, which is b"fragment \xc3" + b"\xe2\x82\xac".
    with pytest.raises(ProtocolError) as info:
        server_reader().feed(data)
    assert info.value.code == 1007
    assert summary(info.value.events) == expected[:5]
