"""Fixtures that start the real `stadium relay` process on a free port."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from loadtest.processes import ROOT, ServiceProcess, start_service
from stadium.redis_server import EmbeddedCluster, EmbeddedRedis

__all__ = ["ROOT", "RelayProcess", "start_relay"]


RelayProcess = ServiceProcess


def start_relay(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                timeout: float = 20.0) -> ServiceProcess:
    """`stadium relay --port 0 ARGS...`; returns once it logs the port it listens on."""
    return start_service("relay", *args, env=env, cwd=cwd, timeout=timeout)


@pytest.fixture
def relay_factory() -> Iterator[Callable[..., RelayProcess]]:
    started: list[RelayProcess] = []

    def factory(*args: str, **kw: object) -> RelayProcess:
        r = start_relay(*args, **kw)  # type: ignore[arg-type]
        started.append(r)
        return r

    yield factory
    for r in started:
        r.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def relay() -> Iterator[RelayProcess]:
    """One relay per test module, with limits loose enough for many clients from 127.0.0.1."""
    r = start_relay("--ip-max-connections", "5000", "--ip-handshake-burst", "5000",
                    "--ip-handshake-rate", "5000", "--room", "faulty=tests.rooms:FaultyRoom",
                    "--room", "echo=tests.rooms:EchoRoom",
                    "--room", "order=tests.rooms:OrderRoom", "--room", "mix=tests.rooms:MixRoom")
    yield r
    r.stop(signal.SIGKILL)


@pytest.fixture(scope="module", params=["single", "cluster"])
def redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A module that asks for this runs every test on one server, then on a 3-master
    cluster."""
    server = EmbeddedRedis() if request.param == "single" else EmbeddedCluster(3)
    with server:
        yield server.url


@pytest.fixture
async def http(service: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the module's `service` fixture (the URL of the service under test)."""
    async with httpx.AsyncClient(base_url=service, timeout=30) as client:
        yield client
