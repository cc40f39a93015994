"""Middlewares and strategies: each one module, each ``async (request, ctx, call_next)``."""
