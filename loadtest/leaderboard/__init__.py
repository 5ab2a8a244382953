"""Leaderboard benchmark: submits and rank reads through the service and straight to Redis."""
