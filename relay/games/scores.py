"""Scores from game rooms to the leaderboard service, posted in the background.

A failed post is logged and retried with the next batch; it never blocks or fails a room.
"""

from __future__ import annotations

import asyncio
import logging
import re

import httpx

from relay.config import RelayConfig

log = logging.getLogger("stadium.relay.scores")

PLAYER = re.compile(r"[A-Za-z0-9_.:~@-]{1,64}")


class ScorePoster:
    """Posts `{player: score}` batches to one board (created as desc/best when missing)."""

    def __init__(self, base_url: str, board: str, api_key: str | None = None,
                 timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.board = board
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout)
        self._board_ready = False
        self._pending: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self.posted = 0

    def post(self, scores: dict[str, int]) -> None:
        """Queue scores (the best per player wins) and send them soon."""
        for player, score in scores.items():
            if PLAYER.fullmatch(player):
                self._pending[player] = max(score, self._pending.get(player, score))
        if self._pending and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, {}
            try:
                if not self._board_ready:
                    resp = await self._http.put(f"/boards/{self.board}",
                                                json={"order": "desc", "operator": "best"})
                    if resp.status_code not in (200, 201, 409):
                        raise RuntimeError(f"PUT board: HTTP {resp.status_code} {resp.text}")
                    self._board_ready = True
                resp = await self._http.post(f"/boards/{self.board}/scores", json={
                    "scores": [{"player": p, "score": s} for p, s in batch.items()]})
                if resp.status_code != 200:
                    raise RuntimeError(f"HTTP {resp.status_code} {resp.text}")
                self.posted += len(batch)
            except Exception as e:  # the leaderboard is away: keep the scores for next time
                log.warning("posting %d scores to %s/boards/%s failed: %s", len(batch),
                            self.base_url, self.board, e)
                for p, s in batch.items():
                    self._pending.setdefault(p, s)
                return

    async def close(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self._http.aclose()


class ScoreBoards:
    """The score posters of one relay, a board each, made on first use; none while the
    relay's config has no leaderboard URL (`stadium dev` fills it in after start)."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self._posters: dict[str, ScorePoster] = {}

    def board(self, name: str) -> ScorePoster | None:
        url = self.config.leaderboard_url
        if not url:
            return None
        poster = self._posters.get(name)
        if poster is None:
            poster = self._posters[name] = ScorePoster(url, name,
                                                       self.config.leaderboard_api_key)
        return poster

    async def close(self) -> None:
        for poster in self._posters.values():
            await poster.close()
