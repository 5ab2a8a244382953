"""Stadium: shared pieces of the services (CLI, configuration, join and player tokens and
their keys)."""

__version__ = "0.1.0"
