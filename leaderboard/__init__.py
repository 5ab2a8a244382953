"""The leaderboard service over Redis sorted sets (not built yet)."""
