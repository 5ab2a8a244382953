"""RFC 6455 frames without I/O: bytes in, events out; payloads in, frame bytes out.

`FrameReader` parses one direction of a connection (masked client frames on the
server side, unmasked server frames on the client side). `encode_frame` frames a
payload once so the same bytes can be written to any number of sockets.
"""

from __future__ import annotations

import codecs
import os
import struct
from typing import Any

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED = 1003
CLOSE_NO_STATUS = 1005
CLOSE_ABNORMAL = 1006
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN = 1013

_DATA_OPCODES = frozenset((OP_TEXT, OP_BINARY))
_CONTROL_OPCODES = frozenset((OP_CLOSE, OP_PING, OP_PONG))
# Codes a peer may put on the wire (RFC 6455 7.4, IANA registry); 3000-4999 are for applications.
_SENDABLE_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
                                   1013, 1014))
_MAX_CONTROL_PAYLOAD = 125
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")


class ProtocolError(Exception):
    """The peer broke the protocol; close the connection with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.events: list[Event] = []  # complete events that came before the violation


class Message:
    """A complete data message: `data` is `str` for text, `bytes` for binary."""

    __slots__ = ("data",)

    def __init__(self, data: str | bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Message({self.data!r})"


class Ping:
    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


class Pong:
    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


class Close:
    """The peer's close frame; `code` is 1005 when the frame carried none."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


Event = Message | Ping | Pong | Close


def valid_close_code(code: int) -> bool:
    return code in _SENDABLE_CLOSE_CODES or 3000 <= code <= 4999


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR `payload` with the 4-byte `mask`, as one big-integer operation."""
    n = len(payload)
    if n == 0:
        return b""
    key = (mask * ((n + 3) >> 2))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def encode_frame(opcode: int, payload: bytes, mask: bytes | None = None, fin: bool = True) -> bytes:
    """One frame. Servers pass no mask; clients pass 4 random bytes (`encode_client_frame`)."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        head = bytes((b0, mbit | n))
    elif n < 65536:
        head = bytes((b0, mbit | 126)) + _U16.pack(n)
    else:
        head = bytes((b0, mbit | 127)) + _U64.pack(n)
    if mask is None:
        return head + payload
    return head + mask + unmask(payload, mask)


def encode_client_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    return encode_frame(opcode, payload, os.urandom(4), fin)


def encode_message(data: str | bytes) -> bytes:
    """A server frame for a text (`str`) or binary (`bytes`) message."""
    if isinstance(data, str):
        return encode_frame(OP_TEXT, data.encode())
    return encode_frame(OP_BINARY, data)


def close_payload(code: int, reason: str = "") -> bytes:
    if code == CLOSE_NO_STATUS:
        return b""
    raw = reason.encode()[:_MAX_CONTROL_PAYLOAD - 2]
    # A cut in the middle of a character would make the reason invalid UTF-8.
    raw = raw.decode("utf-8", "ignore").encode()
    return _U16.pack(code) + raw


def parse_close_payload(payload: bytes) -> Close:
    if not payload:
        return Close(CLOSE_NO_STATUS, "")
    if len(payload) == 1:
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload")
    code = _U16.unpack_from(payload)[0]
    if not valid_close_code(code):
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise ProtocolError(CLOSE_INVALID_DATA, "close reason is not valid UTF-8") from None
    return Close(code, reason)


class FrameReader:
    """Parses frames from one peer into events.

    `feed(data)` returns the events completed by `data` and raises `ProtocolError`
    on the first violation; after that the reader must not be fed again.
    """

    __slots__ = ("_parts", "_have", "_need", "_masked", "max_message_size", "_frag_op", "_frags",
                 "_frag_size", "_utf8")

    def __init__(self, *, masked: bool, max_message_size: int) -> None:
        # An incomplete frame is kept as the reads that brought it, joined once it is whole.
        self._parts: list[bytes] = []
        self._have = 0
        self._need = 0
        self._masked = masked
        self.max_message_size = max_message_size
        self._frag_op = 0  # opcode of the fragmented message in progress, 0 when none
        self._frags: list[Any] = []  # str pieces of a text message, bytes of a binary one
        self._frag_size = 0
        self._utf8: codecs.IncrementalDecoder | None = None

    @property
    def idle(self) -> bool:
        """Between frames and messages: nothing held, so it may serve another socket."""
        return not self._parts and not self._frag_op

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
        return self._have + self._frag_size

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        if self._parts:
            self._parts.append(data)
            self._have += len(data)
            if self._have < self._need:
                return events
            data = b"".join(self._parts)
            self._parts = []
            self._have = 0
        try:
            self._parse(data, events)
        except ProtocolError as e:
            e.events = events
            raise
        return events

    def _parse(self, buf: bytes, events: list[Event]) -> None:
        pos = 0
        end = len(buf)
        masked = self._masked
        need = 2
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            opcode = b0 & 0x0F
            if b0 & 0x70:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "reserved bits set without an extension")
            if bool(b1 & 0x80) is not masked:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "client frames must be masked" if masked
                                    else "server frames must not be masked")
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if end - pos < 4:
                    need = 4
                    break
                n = _U16.unpack_from(buf, pos + 2)[0]
                head = 4
            elif n == 127:
                if end - pos < 10:
                    need = 10
                    break
                n = _U64.unpack_from(buf, pos + 2)[0]
                if n >> 63:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, "frame length has its top bit set")
                head = 10
            fin = b0 & 0x80
            if opcode >= 0x8:
                if opcode not in _CONTROL_OPCODES:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
                if n > _MAX_CONTROL_PAYLOAD:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, "control frame over 125 bytes")
                if not fin:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, "fragmented control frame")
            elif opcode == OP_CONT:
                if not self._frag_op:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, "continuation frame with no message")
            elif opcode in _DATA_OPCODES:
                if self._frag_op:
                    raise ProtocolError(
                        CLOSE_PROTOCOL_ERROR, "new data frame inside a fragmented message"
                    )
            else:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
            if opcode < 0x8 and self._frag_size + n > self.max_message_size:
                raise ProtocolError(
                    CLOSE_TOO_BIG, f"message over the limit of {self.max_message_size} bytes"
                )
            if masked:
                head += 4
            if end - pos < head + n:
                need = head + n
                break
            start = pos + head
            payload = buf[start:start + n]
            if masked:
                payload = unmask(payload, buf[start - 4:start])
            pos = start + n
            if opcode >= 0x8:
                if opcode == OP_PING:
                    events.append(Ping(payload))
                elif opcode == OP_PONG:
                    events.append(Pong(payload))
                else:
                    events.append(parse_close_payload(payload))
                continue
            if fin and opcode:
                if opcode == OP_TEXT:
                    try:
                        events.append(Message(payload.decode()))
                    except UnicodeDecodeError:
                        raise ProtocolError(CLOSE_INVALID_DATA, "text is not valid UTF-8") from None
                else:
                    events.append(Message(payload))
                continue
            events.extend(self._fragment(opcode, fin, payload))
        if pos < end:
            rest = buf[pos:]
            self._parts = [rest]
            self._have = len(rest)
            self._need = need

    def _fragment(self, opcode: int, fin: int, payload: bytes) -> list[Event]:
        if opcode:
            self._frag_op = opcode
            if opcode == OP_TEXT:
                self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._frag_size += len(payload)
        if self._utf8 is not None:
            try:
                # Decoding as fragments arrive fails a bad message early, not at its end.
                self._frags.append(self._utf8.decode(payload, final=bool(fin)))
            except UnicodeDecodeError:
                raise ProtocolError(CLOSE_INVALID_DATA, "text is not valid UTF-8") from None
        else:
            self._frags.append(payload)
        if not fin:
            return []
        data = "".join(self._frags) if self._utf8 is not None else b"".join(self._frags)
        self._frag_op = 0
        self._frags = []
        self._frag_size = 0
        self._utf8 = None
        return [Message(data)]
