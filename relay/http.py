"""HTTP/1.1 without I/O: request heads in, `Request` out; responses and JSON error bodies out."""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote

_TOKEN_RE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE_BAD_RE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class HttpError(Exception):
    """A request we answer with an HTTP error and a JSON body, then close."""

    def __init__(self, status: int, code: str, message: str,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


class Request:
    """A parsed request head. Header names are lower-case; repeats are joined with ', '."""

    __slots__ = ("method", "target", "path", "query", "headers", "body")

    def __init__(self, method: str, target: str, headers: dict[str, str]) -> None:
        self.method = method
        self.target = target
        raw_path, _, qs = target.partition("?")
        self.path = unquote(raw_path)
        self.query = dict(parse_qsl(qs, keep_blank_values=True))
        self.headers = headers
        self.body = b""

    def header_tokens(self, name: str) -> set[str]:
        """Comma-separated header values as a set of lower-case tokens."""
        return {t.strip().lower() for t in self.headers.get(name, "").split(",") if t.strip()}

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> object:
        return json.loads(self.body)


def find_head_end(buf: bytes | bytearray, start: int = 0) -> int:
    """Index just past the blank line that ends a request head, or -1 (search from `start`)."""
    i = buf.find(b"\r\n\r\n", start)
    return -1 if i < 0 else i + 4


def parse_request_head(head: bytes) -> Request:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN_RE.fullmatch(parts[0]) or not parts[1]:
        raise HttpError(400, "bad_request", "malformed request line")
    method, target, version = parts
    if version != b"HTTP/1.1":
        if version.startswith(b"HTTP/1."):
            raise HttpError(400, "bad_request", "HTTP/1.1 is required")
        raise HttpError(505, "http_version", "only HTTP/1.1 is supported")
    if not (target.startswith(b"/") and target.isascii()) or _VALUE_BAD_RE.search(target):
        raise HttpError(400, "bad_request", "request target must be an absolute path")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN_RE.fullmatch(name):
            raise HttpError(400, "bad_request", "malformed header line")
        value = value.strip(b" \t")
        if _VALUE_BAD_RE.search(value):
            raise HttpError(400, "bad_request", "control character in a header value")
        key = name.decode("ascii").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return Request(method.decode("ascii"), target.decode("ascii"), headers)


def http_response(status: int, body: bytes, content_type: str = "application/json",
                  headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A complete response; the relay closes the connection after it."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [f"HTTP/1.1 {status} {phrase}", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}", "Connection: close"]
    lines.extend(f"{k}: {v}" for k, v in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def error_response(err: HttpError) -> bytes:
    return http_response(err.status, error_body(err.code, err.message), headers=err.headers)
