"""Stores: where state that may be shared between processes lives (rate limits, cache, breakers).

Each kind of state has a small ``typing.Protocol`` and an in-process implementation, which is the
default; a shared implementation (Redis) fits the same protocol, so a middleware never knows
which one it was given.
"""
