"""Property tests for the sans-I/O WebSocket codec and the HTTP head parser."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from relay.http import HttpError, Request, parse_request_head
from relay.ws.frames import (
    OP_BINARY,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    Close,
    FrameReader,
    Message,
    Ping,
    Pong,
    ProtocolError,
    encode_frame,
)

FUZZ = settings(max_examples=300, deadline=None)
EVENT_TYPES = (Message, Ping, Pong, Close)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def feed_all(reader: FrameReader, chunks: list[bytes]) -> list:
    events: list = []
    for chunk in chunks:
        events.extend(reader.feed(chunk))
    return events


# --- (1) arbitrary bytes: events or ProtocolError, nothing else --------------------------------

@st.composite
def frame_like(draw: st.DrawFn) -> bytes:
    """A header that is often nearly valid, then a random payload: reaches deeper than noise."""
    b0 = draw(st.one_of(st.integers(0, 255),
                        st.sampled_from([0x81, 0x82, 0x01, 0x02, 0x00, 0x80, 0x88, 0x89, 0x8A])))
    masked = draw(st.integers(0, 9)) > 0  # mostly masked, as a server expects
    length = draw(st.one_of(st.integers(0, 140), st.integers(0, 70000),
                            st.integers(0, (1 << 64) - 1)))
    mbit = 0x80 if masked else 0
    if length < 126 and draw(st.booleans()):
        head = bytes((b0, mbit | length))
    elif length < 65536 and draw(st.booleans()):
        head = bytes((b0, mbit | 126)) + struct.pack("!H", length)
    else:
        head = bytes((b0, mbit | 127)) + struct.pack("!Q", length)
    mask = draw(st.binary(min_size=4, max_size=4)) if masked else b""
    payload = draw(st.binary(max_size=min(length, 200)))
    return head + mask + payload


@FUZZ
@given(
    data=st.one_of(st.binary(max_size=600),
                   st.lists(frame_like(), max_size=6).map(b"".join)),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=12),
    limit=st.sampled_from([0, 16, 1000, 1 << 20]),
)
def test_random_bytes_give_events_or_protocol_error(data: bytes, cuts: list[int],
                                                    limit: int) -> None:
    reader = FrameReader(masked=True, max_message_size=limit)
    try:
        events = feed_all(reader, split(data, cuts))
    except ProtocolError as e:
        assert e.code in {1002, 1007, 1009}
        assert isinstance(e.events, list)
        assert all(isinstance(ev, EVENT_TYPES) for ev in e.events)
    else:
        assert all(isinstance(ev, EVENT_TYPES) for ev in events)


# --- (2) encoded messages come back exactly, in order ----------------------------------------

@st.composite
def client_stream(draw: st.DrawFn) -> tuple[bytes, list[tuple]]:
    """Masked client frames for random messages, some fragmented with pings between pieces."""
    messages = draw(st.lists(st.one_of(st.text(), st.binary()), max_size=8))
    frames: list[bytes] = []
    expected: list[tuple] = []

    def frame(opcode: int, payload: bytes, fin: bool) -> bytes:
        return encode_frame(opcode, payload, draw(st.binary(min_size=4, max_size=4)), fin)

    def maybe_ping() -> None:
        if draw(st.booleans()):
            payload = draw(st.binary(max_size=125))
            frames.append(frame(OP_PING, payload, True))
            expected.append(("ping", payload))

    for message in messages:
        maybe_ping()
        opcode = OP_TEXT if isinstance(message, str) else OP_BINARY
        raw = message.encode() if isinstance(message, str) else message
        pieces: list[bytes] = [raw]
        if draw(st.booleans()):
            # Cut anywhere, also inside a multi-byte character; empty pieces are allowed too.
            cuts = draw(st.lists(st.integers(0, len(raw)), max_size=5))
            pieces = split(raw, cuts) + draw(st.lists(st.just(b""), max_size=1))
        for i, piece in enumerate(pieces):
            if i:
                maybe_ping()
            frames.append(frame(opcode if i == 0 else OP_CONT, piece, i == len(pieces) - 1))
        expected.append(("msg", message))
    maybe_ping()
    return b"".join(frames), expected


def summary(events: list) -> list[tuple]:
    out: list[tuple] = []
    for e in events:
        assert isinstance(e, Message | Ping), e
        out.append(("msg", e.data) if isinstance(e, Message) else ("ping", e.payload))
    return out


@FUZZ
@given(stream=client_stream(), cuts=st.lists(st.integers(min_value=0, max_value=4000),
                                              max_size=20))
def test_encoded_messages_round_trip(stream: tuple[bytes, list[tuple]], cuts: list[int]) -> None:
    data, expected = stream
    reader = FrameReader(masked=True, max_message_size=1 << 20)
    events = feed_all(reader, split(data, cuts))
    assert summary(events) == expected
    assert reader.buffered == 0
    for event, (kind, value) in zip(events, expected, strict=True):
        if kind == "msg":
            assert type(event.data) is type(value)


# --- (3) arbitrary request heads: a Request or an HttpError -----------------------------------

_PREFIXES = [b"", b"GET / HTTP/1.1\r\n", b"GET /ws?x=%zz&y HTTP/1.1\r\nHost: h\r\n",
             b"POST /a%ff HTTP/1.1\r\n"]


@st.composite
def request_like(draw: st.DrawFn) -> bytes:
    """A well-formed skeleton with random bytes in the target, names and values."""
    method = draw(st.sampled_from([b"GET", b"POST", b"get", b"G\xffT", b""]))
    target = b"/" + draw(st.binary(max_size=40))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"http/1.1"]))
    lines = [b" ".join((method, target, version))]
    for _ in range(draw(st.integers(0, 4))):
        names = st.sampled_from([b"Host", b"Upgrade", b"X-A"])
        name = draw(st.one_of(names, st.binary(max_size=8)))
        lines.append(name + b":" + draw(st.binary(max_size=30)))
    return b"\r\n".join(lines)


@FUZZ
@given(
    raw=st.one_of(
        st.binary(max_size=300),
        request_like(),
        st.tuples(st.sampled_from(_PREFIXES), st.binary(max_size=200)).map(b"".join),
        st.lists(st.sampled_from([b"GET", b" ", b"/", b"HTTP/1.1", b"HTTP/1.0", b"\r\n", b":",
                                  b"Host", b"\n", b"\r", b"\t", b"%", b"?", b"=", b"&", b"\xff",
                                  b"\x00", b"a", b"Upgrade: websocket"]),
                 max_size=30).map(b"".join),
    )
)
def test_random_request_heads_give_request_or_http_error(raw: bytes) -> None:
    try:
        req = parse_request_head(raw)
    except HttpError as e:
        assert 400 <= e.status < 600
        assert e.code and e.message
    else:
        assert isinstance(req, Request)
        assert req.target.startswith("/")
        assert all(name == name.lower() for name in req.headers)
