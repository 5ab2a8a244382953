"""The matchmaker service: tickets, queues, matches and seats on relays (not built yet)."""
