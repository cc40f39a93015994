"""Observers of a call: structured logging and OpenTelemetry, both listeners of the contract's
typed events (middlewares emit events; they never log).
"""
