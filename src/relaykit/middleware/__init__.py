"""Policies around a call: one middleware per module, each ``async (request, ctx, call_next)``."""
