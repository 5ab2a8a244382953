"""Stadium: shared pieces of the services (CLI, configuration, join tokens)."""

__version__ = "0.1.0"
