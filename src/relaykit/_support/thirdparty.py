"""The places relaykit leans on another library's private parts, in one labelled room.

Two are speed shortcuts on the call path and one a safety check; all keep working (slower, or
unchecked, never wrong) where the private part is missing. ``tests/_support/test_thirdparty.py``
pins what is relied on, so a new version of the library that changes it fails that test by name
instead of quietly costing microseconds, changing a cache key or skipping a check.

- **structlog's lazy logger proxy** (``structlog._config.BoundLoggerLazyProxy``, what
  ``structlog.get_logger()`` returns). It assembles a new logger on every call, which costs
  more than the level check it serves, so Logging binds it once and again only when the app
  reconfigures structlog. Relied on: the class, and that with ``cache_logger_on_first_use``
  the proxy stores the assembled ``bind`` on itself (then it never follows a new
  configuration, and neither need we). No public API says either.
- **CPython's C JSON encoder** (``json.encoder.c_make_encoder``). ``json.dumps`` builds a new
  encoder per call, which costs more than encoding a short request (benchmarks/overhead.py
  counts it), and every cached call makes a key. Relied on: its positional signature, the one
  ``json.encoder`` itself calls it with. Without it the same text comes from a
  ``json.JSONEncoder`` built once.
- **asyncio's selector** (``loop._selector`` of the selector event loops, the default on Linux
  and macOS). The sync API reads which sockets the calling thread's loop listens on, to refuse
  at once a call whose answer that very loop would have to serve. Relied on: the attribute and
  its ``get_map()`` of registered file descriptors. Without it (uvloop) the check is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json.encoder
import socket
from collections.abc import Callable
from typing import Any

__all__ = ["c_json_encoder", "is_lazy_proxy", "listening_sockets", "proxy_caches_logger"]


def is_lazy_proxy(logger: object) -> bool:
    """Whether ``logger`` is structlog's lazy proxy (what ``structlog.get_logger()`` gives)."""
    from structlog._config import BoundLoggerLazyProxy  # the private part: here only

    return isinstance(logger, BoundLoggerLazyProxy)


def proxy_caches_logger(proxy: object) -> bool:
    """Whether the proxy has cached its logger (``cache_logger_on_first_use``): structlog then
    stores the assembled ``bind`` on the instance, and keeps it whatever the configuration."""
    return "bind" in vars(proxy)


def c_json_encoder(
    default: Callable[[Any], Any], *, sort_keys: bool
) -> Callable[[Any, int], list[str]] | None:
    """The C encoder ``json.dumps(separators=(",", ":"), sort_keys=...)`` would use, built
    once; None where this Python has none. Call it as ``encode(value, 0)`` and join the parts.
    """
    make: Callable[..., Callable[[Any, int], list[str]]] | None = getattr(
        json.encoder, "c_make_encoder", None
    )
    if make is None:
        return None
    return make(
        None,  # markers: no cycle check, a request body is a tree (a cycle: RecursionError)
        default,
        json.encoder.encode_basestring_ascii,
        None,  # indent
        ":",
        ",",
        sort_keys,
        False,  # skipkeys
        True,  # allow_nan, as json.dumps
    )


def listening_sockets(loop: asyncio.AbstractEventLoop) -> set[tuple[str, int]]:
    """The (address, port) of every listening TCP socket ``loop`` serves; empty when the loop
    does not expose its selector."""
    selector = getattr(loop, "_selector", None)  # the private part: here only
    found: set[tuple[str, int]] = set()
    if selector is None:
        return found
    for key in list(selector.get_map().values()):
        try:
            sock = socket.socket(fileno=key.fd)  # borrowed: detached below, the fd stays open
        except OSError:  # not a socket (a pipe)
            continue
        try:
            with contextlib.suppress(OSError):
                if sock.type == socket.SOCK_STREAM and sock.getsockopt(
                    socket.SOL_SOCKET, socket.SO_ACCEPTCONN
                ):
                    address, port = sock.getsockname()[:2]
                    found.add((address, port))
        finally:
            sock.detach()
    return found
