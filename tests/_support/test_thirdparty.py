"""The private parts of other libraries relaykit relies on (relaykit._support.thirdparty) still
hold.

Each test fails with a message naming what changed, so an upgrade that breaks a shortcut is
caught here and not as a slow call or a changed cache key.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Iterator

import pytest
import structlog

from relaykit._support.canonical import canonical_json
from relaykit._support.thirdparty import (
    c_json_encoder,
    is_lazy_proxy,
    listening_sockets,
    proxy_caches_logger,
)

WHAT_CHANGED = "a structlog upgrade changed what relaykit._support.thirdparty relies on: "


@pytest.fixture
def structlog_config() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def test_structlog_get_logger_still_returns_the_lazy_proxy(structlog_config: object) -> None:
    structlog.reset_defaults()
    assert is_lazy_proxy(structlog.get_logger("x")), WHAT_CHANGED + "the proxy class"
    assert not is_lazy_proxy(structlog.get_logger("x").bind())  # a bound logger is no proxy


def test_a_proxy_that_caches_its_logger_still_says_so_on_itself(structlog_config: object) -> None:
    structlog.configure(cache_logger_on_first_use=True)
    proxy = structlog.get_logger("cached")
    assert not proxy_caches_logger(proxy)
    proxy.bind()
    assert proxy_caches_logger(proxy), WHAT_CHANGED + "where a cached logger is kept"
    structlog.configure(cache_logger_on_first_use=False)
    uncached = structlog.get_logger("uncached")
    uncached.bind()
    assert not proxy_caches_logger(uncached), WHAT_CHANGED + "caching without being asked"


@pytest.mark.skipif(platform.python_implementation() != "CPython", reason="CPython's C encoder")
def test_cpythons_c_json_encoder_is_there_and_takes_the_signature_relied_on() -> None:
    encode = c_json_encoder(lambda value: None, sort_keys=True)
    assert encode is not None, "json.encoder.c_make_encoder is gone: canonical JSON is slower"
    assert "".join(encode({"b": [1, 2.5], "a": "é"}, 0)) == '{"a":"\\u00e9","b":[1,2.5]}'


@pytest.mark.parametrize(
    "value",
    [
        {"z": 1, "a": {"y": [True, None, 1.5e-7], "b": "ünïcode \u2028"}},
        {"n": math.inf, "m": -math.inf, "k": 10**30},
        ["x", {"b": 2, "a": 1}],
    ],
)
def test_canonical_json_is_exactly_what_json_dumps_would_write(value: object) -> None:
    # The cache key's text must not depend on which encoder built it.
    assert canonical_json(value) == json.dumps(value, sort_keys=True, separators=(",", ":"))


async def test_asyncios_selector_still_shows_the_sockets_a_loop_listens_on() -> None:
    import asyncio

    server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        found = listening_sockets(asyncio.get_running_loop())
    finally:
        server.close()
        await server.wait_closed()

    assert ("127.0.0.1", port) in found, (
        "an asyncio change broke relaykit._support.thirdparty.listening_sockets (loop._selector)"
    )
