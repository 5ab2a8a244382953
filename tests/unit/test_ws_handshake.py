"""HTTP request heads and the WebSocket opening handshake (relay/ws/handshake.py)."""

from __future__ import annotations

import base64
import json

import pytest

from relay.http import (
    HttpError,
    Request,
    error_response,
    find_head_end,
    http_response,
    parse_request_head,
)
from relay.ws.handshake import accept_key, accept_response, is_upgrade, validate_upgrade

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

UPGRADE_HEADERS = {
    "Host": "server.example.com",
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": RFC_KEY,
    "Origin": "http://example.com",
    "Sec-WebSocket-Version": "13",
}


def head(request_line: str = "GET /chat HTTP/1.1", headers: dict[str, str] | None = None,
         drop: tuple[str, ...] = (), **extra: str) -> bytes:
    """A request head without its final blank line, as the relay passes it to the parser."""
    fields = dict(UPGRADE_HEADERS if headers is None else headers)
    for name in drop:
        del fields[name]
    fields.update({k.replace("_", "-"): v for k, v in extra.items()})
    lines = [request_line, *(f"{k}: {v}" for k, v in fields.items())]
    return "\r\n".join(lines).encode("latin-1")


def upgrade_error(raw: bytes) -> HttpError:
    with pytest.raises(HttpError) as info:
        validate_upgrade(parse_request_head(raw))
    return info.value


def parse_error(raw: bytes) -> HttpError:
    with pytest.raises(HttpError) as info:
        parse_request_head(raw)
    return info.value


def split_response(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head_bytes, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, "response head must end with a blank line"
    status, *lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, colon, value = line.partition(": ")
        assert colon, line
        headers[name.lower()] = value
    return status, headers, body


# --- accept key -----------------------------------------------------------------------------

def test_rfc_example_accept_key() -> None:
    assert accept_key(RFC_KEY) == RFC_ACCEPT


def test_valid_upgrade_returns_the_accept_value() -> None:
    assert validate_upgrade(parse_request_head(head())) == RFC_ACCEPT


def test_valid_upgrade_with_final_blank_line_and_lenient_tokens() -> None:
    raw = head(headers={
        "Host": "h", "Upgrade": "WebSocket", "Connection": "keep-alive, Upgrade",
        "Sec-WebSocket-Version": " 13 ", "Sec-WebSocket-Key": f"  {RFC_KEY}  ",
    }) + b"\r\n\r\n"
    req = parse_request_head(raw)
    assert is_upgrade(req)
    assert validate_upgrade(req) == RFC_ACCEPT


# --- request parsing ------------------------------------------------------------------------

def test_request_head_parses() -> None:
    raw = (b"GET /ws/room%201?token=abc&x= HTTP/1.1\r\n"
           b"Host: example.com\r\n"
           b"Sec-WebSocket-Protocol: chat\r\n"
           b"X-Tab:\t padded value \t\r\n"
           b"sec-websocket-protocol: superchat\r\n"
           b"SEC-WEBSOCKET-PROTOCOL: v3\r\n"
           b"X-Latin: caf\xe9")
    req = parse_request_head(raw)
    assert isinstance(req, Request)
    assert req.method == "GET"
    assert req.target == "/ws/room%201?token=abc&x="
    assert req.path == "/ws/room 1"
    assert req.query == {"token": "abc", "x": ""}
    assert all(name == name.lower() for name in req.headers)
    assert req.headers["host"] == "example.com"
    assert req.headers["sec-websocket-protocol"] == "chat, superchat, v3"
    assert req.headers["x-tab"] == "padded value"
    assert req.headers["x-latin"] == "café"
    assert req.header_tokens("sec-websocket-protocol") == {"chat", "superchat", "v3"}
    assert req.header_tokens("missing") == set()


def test_is_upgrade() -> None:
    assert is_upgrade(parse_request_head(head()))
    assert is_upgrade(parse_request_head(head(drop=("Connection",))))  # Upgrade alone
    assert is_upgrade(parse_request_head(head(drop=("Upgrade",))))  # Connection: upgrade alone
    plain = parse_request_head(b"GET /health HTTP/1.1\r\nHost: h\r\nConnection: keep-alive")
    assert not is_upgrade(plain)


def test_find_head_end() -> None:
    assert find_head_end(b"GET / HTTP/1.1\r\nHost: h\r\n") == -1
    assert find_head_end(b"") == -1
    raw = b"GET / HTTP/1.1\r\nHost: h\r\n\r\nBODY"
    assert find_head_end(raw) == len(raw) - 4
    assert raw[find_head_end(raw):] == b"BODY"


# --- upgrade refusals -----------------------------------------------------------------------

def test_missing_upgrade_header_is_426() -> None:
    err = upgrade_error(head(drop=("Upgrade",)))
    assert err.status == 426
    assert ("Upgrade", "websocket") in err.headers


def test_upgrade_to_another_protocol_is_426() -> None:
    err = upgrade_error(head(Upgrade="h2c"))
    assert err.status == 426


def test_missing_connection_upgrade_is_400() -> None:
    assert upgrade_error(head(drop=("Connection",))).status == 400
    assert upgrade_error(head(Connection="keep-alive")).status == 400


@pytest.mark.parametrize("version", ["8", "12", "14", ""])
def test_unsupported_version_is_426_with_version_header(version: str) -> None:
    err = upgrade_error(head(Sec_WebSocket_Version=version))
    assert err.status == 426
    assert ("Sec-WebSocket-Version", "13") in err.headers
    _, headers, _ = split_response(error_response(err))
    assert headers["sec-websocket-version"] == "13"


def test_missing_version_is_426() -> None:
    err = upgrade_error(head(drop=("Sec-WebSocket-Version",)))
    assert err.status == 426
    assert ("Sec-WebSocket-Version", "13") in err.headers


@pytest.mark.parametrize("key", [
    None,  # missing
    "",
    base64.b64encode(bytes(15)).decode(),  # short
    base64.b64encode(bytes(17)).decode(),  # long
    "not base64 at all!!",
    "dGhlIHNhbXBsZSBub25jZQ",  # missing padding
    "dGhlIHNhbXBsZSBub25jZQ==x",
    "dGhlIHNhbXBs\xe9ZSBub25jZQ==",  # non-ASCII
])
def test_bad_key_is_400(key: str | None) -> None:
    raw = head(drop=("Sec-WebSocket-Key",)) if key is None else head(Sec_WebSocket_Key=key)
    assert upgrade_error(raw).status == 400


@pytest.mark.parametrize("method", ["POST", "PUT", "HEAD", "get"])
def test_non_get_upgrade_is_400(method: str) -> None:
    assert upgrade_error(head(f"{method} /chat HTTP/1.1")).status == 400


def test_http_1_0_is_400() -> None:
    assert parse_error(head("GET /chat HTTP/1.0")).status == 400


def test_unknown_http_version_is_an_error() -> None:
    err = parse_error(head("GET /chat HTTP/2.0"))
    assert 400 <= err.status < 600


@pytest.mark.parametrize("line", [
    "",
    "garbage",
    "GET /chat",
    "GET  /chat HTTP/1.1",  # empty target between two spaces
    "GET /chat HTTP/1.1 extra",
    "G(T /chat HTTP/1.1",
    "GET chat HTTP/1.1",  # not an absolute path
    "GET /ch\x01at HTTP/1.1",
    "GET /caf\xe9 HTTP/1.1",
])
def test_garbage_request_line_is_400(line: str) -> None:
    assert parse_error(head(line)).status == 400


@pytest.mark.parametrize("line", [
    b"Upgrade websocket",  # no colon
    b"Upgrade",  # no colon, and the whole line is a valid token
    b": no name",
    b"Bad Name: x",
    b" Folded: continuation",
    b"Na(me): x",
])
def test_bad_header_line_is_400(line: bytes) -> None:
    assert parse_error(b"GET / HTTP/1.1\r\nHost: h\r\n" + line).status == 400


@pytest.mark.parametrize("value", [b"a\x00b", b"a\x01b", b"a\nb", b"a\x1fb", b"a\x7fb", b"a\rb"])
def test_control_character_in_header_value_is_400(value: bytes) -> None:
    assert parse_error(b"GET / HTTP/1.1\r\nHost: h\r\nX-Foo: " + value).status == 400


@pytest.mark.parametrize("raw", [
    b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length\n: 5",
    b"GET / HTTP/1.1\r\nTransfer-Encoding\n: chunked",
    b"GET\n / HTTP/1.1\r\nHost: h",
])
def test_bare_lf_in_token_is_400(raw: bytes) -> None:
    # RFC 9112 5.1 / RFC 9110 5.1: a field name (and the method) is a token: no whitespace.
    assert parse_error(raw).status == 400


def test_missing_host_is_400() -> None:
    assert upgrade_error(head(drop=("Host",))).status == 400


# --- responses ------------------------------------------------------------------------------

def test_error_response_has_json_body_and_status_line() -> None:
    err = HttpError(426, "upgrade_required", "only 'Upgrade: websocket' is supported",
                    (("Upgrade", "websocket"),))
    status, headers, body = split_response(error_response(err))
    assert status == "HTTP/1.1 426 Upgrade Required"
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == str(len(body))
    assert headers["connection"] == "close"
    assert headers["upgrade"] == "websocket"
    assert json.loads(body) == {
        "error": {"code": "upgrade_required", "message": "only 'Upgrade: websocket' is supported"}
    }


def test_error_response_from_a_parse_error() -> None:
    err = parse_error(b"nonsense")
    status, _, body = split_response(error_response(err))
    assert status.startswith("HTTP/1.1 400 ")
    payload = json.loads(body)
    assert set(payload) == {"error"}
    assert set(payload["error"]) == {"code", "message"}
    assert payload["error"]["code"] == err.code and payload["error"]["message"] == err.message


def test_http_response_unknown_status() -> None:
    status, headers, body = split_response(http_response(599, b"{}"))
    assert status == "HTTP/1.1 599 Unknown"
    assert headers["content-length"] == "2" and body == b"{}"


def test_accept_response_declines_permessage_deflate() -> None:
    raw = head(Sec_WebSocket_Extensions="permessage-deflate; client_max_window_bits")
    req = parse_request_head(raw)
    assert "permessage-deflate" in req.headers["sec-websocket-extensions"]
    response = accept_response(validate_upgrade(req))
    status, headers, body = split_response(response)
    assert status == "HTTP/1.1 101 Switching Protocols"
    assert headers["upgrade"].lower() == "websocket"
    assert "upgrade" in headers["connection"].lower()
    assert headers["sec-websocket-accept"] == RFC_ACCEPT
    assert "sec-websocket-extensions" not in headers
    assert b"deflate" not in response.lower()
    assert body == b""
