"""The matchmaker service: tickets wait in queues, a numpy matcher forms matches, and every
player gets a seat (relay URL and signed join token) in a room on the least-loaded relay."""
