"""Strategies over targets: how a Relay turns its list of targets into one answer.

``Fallback`` (in ``relaykit.middleware.fallback`` for now) tries them in order; the rules every
strategy shares (which failures move on, which targets a call must not ask again) are in
``_route``.
"""
