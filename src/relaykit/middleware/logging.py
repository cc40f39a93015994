"""``relaykit.middleware.logging``, the public path the README and docs show, kept importable: the
code lives in ``relaykit.observability.logging``.
"""

from relaykit.observability.logging import (
    Logging,
)

__all__ = [
    "Logging",
]
