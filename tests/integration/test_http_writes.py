"""The leaderboard sends each HTTP response, head and body, in one write (uvicorn alone
writes them apart): counted from the service process's write calls (`syscw` in
/proc/PID/io) over many requests on one keep-alive connection."""

from __future__ import annotations

import socket
from pathlib import Path

from loadtest.processes import start_service
from stadium.redis_server import EmbeddedRedis

REQUESTS = 200


def _writes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    raise AssertionError("no syscw in /proc/PID/io")


def _get(sock: socket.socket, path: str) -> bytes:
    """One request, and its whole response (by its content-length)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 200"), head
    return body


def test_each_response_is_one_write() -> None:
    with EmbeddedRedis() as redis:
        service = start_service("leaderboard", "--redis-url", redis.url)
        try:
            with socket.create_connection((service.host, service.port)) as sock:
                _get(sock, "/openapi.json")  # built on first use
                before = _writes(service.proc.pid)
                for _ in range(REQUESTS):
                    assert b"openapi" in _get(sock, "/openapi.json")
                writes = _writes(service.proc.pid) - before
            # two per response when the head and the body go apart
            assert REQUESTS <= writes < 1.2 * REQUESTS, writes
        finally:
            service.stop()
