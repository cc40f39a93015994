"""Relays built from a YAML file or a dict (see docs/config.md)."""
