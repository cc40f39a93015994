"""``relaykit.classify``, the public path the README and docs show, kept importable: the code lives
in ``relaykit.backends.classify``.
"""

from relaykit.backends.classify import (
    classify_exception,
    describe_exception,
    error_from_http,
    parse_error_body,
    retry_after_from_headers,
)

__all__ = [
    "classify_exception",
    "describe_exception",
    "error_from_http",
    "parse_error_body",
    "retry_after_from_headers",
]
