"""Each service against its own OpenAPI document: schemathesis generates requests from the
document the service serves (its coverage cases, then random ones, then chains of calls that
feed one answer into the next) and sends them to the real `stadium leaderboard` and `stadium
matchmaker` processes on a real Redis. A 5xx, a status or error code the document does not
list, an answer that breaks its schema, a 405 without `Allow`, a request the document forbids
that is served, or one it allows that is refused for a reason it could have said (see
openapi_checks.py): each fails the test, with schemathesis' report of the request."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loadtest.processes import ROOT, ServiceProcess, start_service
from stadium import tokens
from stadium.redis_server import EmbeddedRedis
from tests.queues import queue, queues_file

KEY = "server-key"
AUTH = {"X-API-Key": KEY}
SECRET = "relay-secret"
QUEUES = [queue("duel"), queue("trio", 3, regions=["eu", "us"], max_region_latency_ms=100)]
LONG_POLL = 0.5  # seconds: --max-long-poll, so that waiting for a ticket keeps the run short
TIMEOUT = 100  # seconds, under pytest's own limit: a run this long is a bug of its own


def schemathesis_run(service: ServiceProcess) -> None:
    """`schemathesis run` (as schemathesis.toml beside this file sets it) against the
    service's own document; fails with its report. Every operation must have been tested."""
    document = httpx.get(f"{service.url}/openapi.json").json()
    operations = sum(len(item) for item in document["paths"].values())
    command = [sys.executable, "-m", "schemathesis.cli", "--no-color", "--config-file",
               str(Path(__file__).with_name("schemathesis.toml")), "run",
               f"{service.url}/openapi.json", "--header", f"X-API-Key: {KEY}"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=TIMEOUT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    report = done.stdout[-30000:] + done.stderr[-5000:]
    if done.returncode != 0:
        pytest.fail(report, pytrace=False)
    tested = re.search(r"Tested: (\d+)", done.stdout)
    assert tested is not None and int(tested.group(1)) == operations, report


@pytest.fixture(scope="module")
def redis() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture(scope="module")
def leaderboard(redis: EmbeddedRedis) -> Iterator[ServiceProcess]:
    proc = start_service("leaderboard", "--redis-url", redis.url, "--api-key", KEY)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def matchmaker(redis: EmbeddedRedis,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A matchmaker with a relay in the directory, so that tickets are matched and seated;
    short long polls."""
    queues = queues_file(tmp_path_factory.mktemp("openapi"), *QUEUES)
    relay = start_service("relay", "--redis-url", redis.url, "--secret", SECRET)
    proc = start_service("matchmaker", "--redis-url", redis.url, "--secret", SECRET,
                         "--api-key", KEY, "--queues", str(queues), "--match-interval", "0.05",
                         "--max-long-poll", str(LONG_POLL))
    yield proc
    proc.stop()
    relay.stop(signal.SIGKILL)


def test_a_long_poll_without_timeout_waits_at_most_the_longest_allowed(
        matchmaker: ServiceProcess) -> None:
    """The default timeout (25 s) is cut to --max-long-poll, not refused. Before the
    generated requests: a lone ticket in trio stays waiting."""
    player = {"Authorization": f"Bearer {tokens.sign_player(SECRET, player='alone')}"}
    r = httpx.post(matchmaker.url + "/tickets", json={"player": "alone", "queue": "trio"},
                   headers=player)
    assert r.status_code == 201, r.text
    ticket = r.json()["id"]
    started = time.monotonic()
    r = httpx.get(f"{matchmaker.url}/tickets/{ticket}/wait", timeout=10, headers=player)
    assert r.status_code == 200 and r.json()["status"] == "waiting", r.text
    assert LONG_POLL - 0.1 < time.monotonic() - started < 5
    httpx.delete(f"{matchmaker.url}/tickets/{ticket}", headers=player).raise_for_status()


def test_the_leaderboard_answers_as_its_document_says(leaderboard: ServiceProcess) -> None:
    schemathesis_run(leaderboard)


def test_the_matchmaker_answers_as_its_document_says(matchmaker: ServiceProcess) -> None:
    schemathesis_run(matchmaker)


def test_every_error_answer_is_documented_with_its_codes(leaderboard: ServiceProcess,
                                                         matchmaker: ServiceProcess) -> None:
    """Every error status of every operation is the services' error body with the codes it
    may carry; FastAPI's own validation body (which the services never send) is not there."""
    for service in (leaderboard, matchmaker):
        document = httpx.get(f"{service.url}/openapi.json").json()
        assert "HTTPValidationError" not in str(document)
        for path, item in document["paths"].items():
            for method, operation in item.items():
                for status, answer in operation["responses"].items():
                    if int(status) < 400:
                        continue
                    schema = answer["content"]["application/json"]["schema"]
                    where = (method, path, status)
                    assert schema["required"] == ["error"], where
                    assert schema["properties"]["error"]["properties"]["code"]["enum"], where


def test_a_405_names_every_method_of_its_path(leaderboard: ServiceProcess,
                                              matchmaker: ServiceProcess) -> None:
    cases = [(leaderboard, "PATCH", "/boards/b", "GET, PUT"),
             (leaderboard, "PUT", "/boards/b/players/p", "DELETE, GET"),
             (leaderboard, "POST", "/healthz", "GET"),
             (matchmaker, "PUT", "/tickets/duel.0", "DELETE, GET"),
             (matchmaker, "DELETE", "/queues", "GET")]
    for service, method, path, allow in cases:
        r = httpx.request(method, service.url + path)
        assert r.status_code == 405 and r.headers["allow"] == allow, (method, path, r.headers)
        assert r.json()["error"]["code"] == "method_not_allowed"


def test_empty_query_values_are_refused(leaderboard: ServiceProcess,
                                        matchmaker: ServiceProcess) -> None:
    """`limit=` is not `limit` left out: 422, on the hot paths as on the others."""
    httpx.put(leaderboard.url + "/boards/empty", json={}, headers=AUTH).raise_for_status()
    httpx.post(leaderboard.url + "/boards/empty/scores", json={"player": "p", "score": 1},
               headers=AUTH).raise_for_status()
    for url in [leaderboard.url + "/boards/empty?limit=",
                leaderboard.url + "/boards/empty?period=",
                leaderboard.url + "/boards/empty?cursor=",
                leaderboard.url + "/boards/empty?limit=5&period=",
                leaderboard.url + "/boards/empty/players/p?period=",
                leaderboard.url + "/boards/empty/players/p/around?n=",
                matchmaker.url + "/tickets/duel." + "0" * 32 + "/wait?timeout="]:
        r = httpx.get(url, headers=AUTH)
        assert r.status_code == 422, (url, r.text)
        assert r.json()["error"]["code"] == "invalid_request"
    assert httpx.get(leaderboard.url + "/boards/empty/players/p").status_code == 200


def test_half_a_surrogate_pair_is_refused_not_stored(leaderboard: ServiceProcess,
                                                      matchmaker: ServiceProcess) -> None:
    """JSON may escape half a surrogate pair, which is no Unicode: stored, it could never be
    answered again (each read a 500)."""
    httpx.put(leaderboard.url + "/boards/text", json={}, headers=AUTH).raise_for_status()
    for url, raw in [
            (leaderboard.url + "/boards/text/scores",
             b'{"player": "p", "score": 1, "metadata": {"name": "\\ud800"}}'),
            (leaderboard.url + "/boards/text/scores",
             b'{"scores": [{"player": "p", "score": 1, "metadata": ["\\udc00"]}]}'),
            (matchmaker.url + "/tickets",
             b'{"player": "p", "queue": "duel", "attributes": {"\\ud800": 1}}')]:
        r = httpx.post(url, content=raw, headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", r.text
    assert httpx.get(leaderboard.url + "/boards/text").json()["entries"] == []
    r = httpx.post(leaderboard.url + "/boards/text/scores", headers=AUTH,
                   json={"player": "p", "score": 1, "metadata": {"name": "\U0001f600 é"}})
    assert r.status_code == 200
    entry = httpx.get(leaderboard.url + "/boards/text").json()["entries"][0]
    assert entry["metadata"] == {"name": "\U0001f600 é"}
