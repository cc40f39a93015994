"""The contract every layer agrees on: the wire schema, errors, events, the clock, the stream, the
middleware and handler types, the call context, targets and one attempt.

Nothing here imports a policy (middleware/, strategies/), a store, a backend, an observer or a
face (facade/, config/, decorators/); tests/test_layering.py keeps it so.
"""
