"""nats-auth-callout: answers NATS auth callout requests from a YAML policy."""

__version__ = "0.1.0"
