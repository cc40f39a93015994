"""``relaykit.stream``, the public path the README and docs show, kept importable: the code lives
in ``relaykit.contract.stream``.
"""

from relaykit.contract.stream import (
    ChatStream,
    StreamFinalizer,
    commits,
)

__all__ = [
    "ChatStream",
    "StreamFinalizer",
    "commits",
]
