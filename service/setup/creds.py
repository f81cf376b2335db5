"""Creds files for `init`: the format lives in `service.protocol.creds`, where
the startup check of the service's own login reads it too."""

from service.protocol.creds import format_creds, parse_creds

__all__ = ["format_creds", "parse_creds"]
