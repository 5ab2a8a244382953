"""Sans-I/O WebSocket (RFC 6455): the HTTP upgrade and the frame codec, no sockets."""
