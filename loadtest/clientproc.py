"""Client processes of the benchmarks: thousands of WebSocket clients spread over source
addresses 127.0.0.2+, joined in batches, then driven by the bench's commands over a pipe."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from loadtest.wsclient import WSClient

CONNS_PER_ADDR = 10_000  # per source address, well inside the ephemeral port range
BATCH = 200  # handshakes in flight at once


async def join_all(host: str, port: int, path: str, n: int, first_addr: int,
                   on_message: Callable[[int], Callable[[str | bytes], None]]
                   ) -> tuple[list[WSClient], list[str]]:
    """Open `n` clients (client i gets `on_message(i)`); the clients that joined and the
    errors of those that did not."""
    clients: list[WSClient] = []
    failed: list[str] = []
    for i in range(0, n, BATCH):
        batch = [WSClient.connect(host, port, path, timeout=60, on_message=on_message(i + j),
                                  local_addr=(f"127.0.0.{first_addr + (i + j) // CONNS_PER_ADDR}",
                                              0))
                 for j in range(min(BATCH, n - i))]
        for r in await asyncio.gather(*batch, return_exceptions=True):
            if isinstance(r, WSClient):
                clients.append(r)
            else:
                failed.append(repr(r))
    return clients, failed


async def obey(pipe: Connection, clients: list[WSClient], failed: list[str],
               handlers: dict[str, Callable[[tuple[Any, ...]], Any]]) -> None:
    """Report ("ready", joined, first errors, errors), then answer the bench's commands with
    their handlers (sync or async) until one has none ("close"); then close the clients."""
    pipe.send(("ready", len(clients), failed[:3], len(failed)))
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    loop.add_reader(pipe.fileno(), lambda: commands.put_nowait(pipe.recv()))
    try:
        while True:
            cmd = await commands.get()
            os.set_blocking(pipe.fileno(), True)  # the loop made it non-blocking; reports are large
            handler = handlers.get(cmd[0])
            if handler is None:
                break
            answer = handler(cmd)
            if inspect.isawaitable(answer):
                answer = await answer
            pipe.send(answer)
    finally:
        loop.remove_reader(pipe.fileno())
        for c in clients:
            if c.transport is not None:
                c.transport.close()
        await asyncio.sleep(0.2)


def wait_ready(pipes: list[Connection], timeout: float) -> tuple[int, int, list[str]]:
    """Wait for every client process's ("ready", ...) report: (joined, refused, the first
    errors)."""
    joined, refused, errors = 0, 0, []
    for pipe in pipes:
        if not pipe.poll(timeout):
            raise RuntimeError(f"clients did not finish joining in {timeout:g} s")
        _, ok, errs, nfailed = pipe.recv()
        joined += ok
        refused += nfailed
        errors += errs
    return joined, refused, errors
