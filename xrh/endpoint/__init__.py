"""The embedded two-region endpoint (moto, corrected) and how other processes find it."""

from xrh.endpoint.embedded import EmbeddedEndpoint, answers, resolve_config

__all__ = ["EmbeddedEndpoint", "answers", "resolve_config"]
