"""Credentials: which headers and query parameters carry one, and masking them wherever text goes.

Every path that shows text a key could reach calls this module: errors (also when a provider
echoes a key back, as is, JSON-escaped or URL-encoded), reprs, log lines, events and spans, and
config and request validation errors. A new way of passing a key is taught here, once.

What counts as a credential:

- a header or query parameter named in ``SECRET_HEADERS`` / ``SECRET_PARAMS``, or whose name
  ends in a credential word (``api_key``, ``x-api-key``, ``auth_token``, ``client_secret``,
  ``x-amz-security-token``, ...; see ``is_secret_name``), or one a user named
  (``OpenAICompatible(..., secret_headers=["x-tenant-pass"])``);
- the ``user:password@`` part of a URL;
- as a safety net for text that left without its request (another SDK's exception, a proxy
  echoing another hop's header): anything shaped like an ``sk-`` key, a Google ``AIza`` key, a
  long ``Bearer`` token, or a credential-named query parameter inside a URL.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, unquote_plus, urlsplit, urlunsplit

__all__ = [
    "MASK",
    "SECRET_HEADERS",
    "SECRET_PARAMS",
    "SecretDict",
    "SecretURL",
    "Secrets",
    "is_secret_name",
    "mask_shapes",
    "mask_url",
    "masked_mapping",
]

MASK = "**********"

SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "api-key",  # Azure OpenAI
        "x-api-key",  # Anthropic and many gateways
        "x-goog-api-key",  # Google
        "ocp-apim-subscription-key",  # Azure API Management
        "cookie",
        "x-auth-token",
    }
)
"""Header names (lower case) that always carry a credential."""

SECRET_PARAMS = frozenset({"key", "api_key", "api-key", "apikey", "access_token", "token", "sig"})
"""Query parameter names (lower case) that carry one: ``?key=`` (Google), Azure's ``sig``."""

# A name that ends in a credential word: api_key, x-api-key, auth_token, client_secret, ... but
# not max_tokens, cache_key_prefix or other names that merely contain one.
_SECRET_NAME = re.compile(
    r"(^|[_-])(api_?key|apikey|key|token|secret|password|passwd|authorization|credentials?|"
    r"signature|cookie)$",
    re.IGNORECASE,
)
# The safety net: shapes ordinary error prose never has. An OpenAI-style "sk-" key and a Bearer
# credential of at least 20 characters (an error saying "missing bearer token" keeps its words),
# a Google API key, and the value of a credential-named query parameter in a URL.
_KEY_SHAPES = re.compile(
    r"\bsk-[A-Za-z0-9_-]{20,}"
    r"|\bAIza[0-9A-Za-z_-]{30,}"
    r"|(?<=[Bb]earer )[A-Za-z0-9._~+/-]{20,}=*"
)
# In a URL inside some text: a credential query parameter's value, and user:password@.
_URL_CREDENTIALS = re.compile(
    r"(?P<param>[?&;](?:key|api_key|api-key|apikey|access_token|token|sig)=)[^&#\s\"'<>\\]+"
    r"|(?P<scheme>://)[^/\s@:\"']+:[^/\s@\"']+(?=@)",
    re.IGNORECASE,
)
# Shorter values found by guessing (on another SDK's exception) are placeholders ("k", "test");
# masking every occurrence of one would garble the message without hiding anything.
_MIN_GUESSED = 8


def is_secret_name(name: str, extra: Collection[str] = ()) -> bool:
    """Whether a header, query parameter or setting called ``name`` holds a credential.

    ``extra`` holds more names (lower case) the user declared secret.
    """
    lowered = name.lower()
    return (
        lowered in SECRET_HEADERS
        or lowered in SECRET_PARAMS
        or lowered in extra
        or _SECRET_NAME.search(name) is not None
    )


class Secrets:
    """The credentials one request carries, to mask in any text built about it.

    Masking covers each value as written, JSON-escaped (quotes, backslashes, and PHP's ``\\/``)
    and URL-encoded, the forms a provider echoing it back uses, then the key shapes above.

    >>> Secrets(["sk-live-0123456789"]).mask("bad key sk-live-0123456789")
    'bad key **********'
    """

    __slots__ = ("_forms",)

    def __init__(self, values: Iterable[str] = ()) -> None:
        forms: dict[str, None] = {}
        # A longer value first: it may contain a shorter one.
        for value in sorted({v for v in values if v}, key=len, reverse=True):
            escaped = json.dumps(value)[1:-1]
            for form in (escaped.replace("/", "\\/"), escaped, value, quote(value, safe="")):
                forms[form] = None
        self._forms = tuple(forms)

    @classmethod
    def of(
        cls,
        *,
        headers: Mapping[str, str] | None = None,
        url: str | None = None,
        values: Iterable[str] = (),
        names: Collection[str] = (),
        guessed: bool = False,
    ) -> Secrets:
        """The credentials in ``headers`` (those with a secret name, or one of ``names``), in
        ``url`` (its ``user:password@`` and credential query parameters) and ``values``.

        ``guessed``: the headers come from a request relaykit did not build (another SDK's
        exception), so values too short to be real keys are left alone.
        """
        found = set(values)
        for name, value in (headers or {}).items():
            if isinstance(name, str) and isinstance(value, str) and is_secret_name(name, names):
                found.update(_header_credentials(value))
        if url:
            found.update(_url_credentials(url, names))
        if guessed:
            found = {value for value in found if len(value) >= _MIN_GUESSED}
        return cls(found)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def __add__(self, other: Secrets) -> Secrets:
        joined = Secrets()
        joined._forms = tuple(
            dict.fromkeys(sorted((*self._forms, *other._forms), key=len, reverse=True))
        )
        return joined

    def mask(self, text: str) -> str:
        """``text`` without these credentials, nor anything shaped like a key."""
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return mask_shapes(text)

    def contained_in(self, text: str) -> bool:
        """Whether ``text`` shows any of these credentials (or a key shape)."""
        return any(form in text for form in self._forms) or mask_shapes(text) != text

    def __repr__(self) -> str:
        return f"Secrets({len(self._forms)} forms)"


def mask_shapes(text: str) -> str:
    """``text`` with key-shaped tokens and URL credentials masked: the net behind ``Secrets``."""
    text = _KEY_SHAPES.sub(MASK, text)
    return _URL_CREDENTIALS.sub(lambda m: (m["param"] or m["scheme"]) + MASK, text)


def mask_url(url: str, names: Collection[str] = ()) -> str:
    """``url`` as relaykit shows it: ``user:password@`` and credential query values masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    pairs = parts.query.split("&") if parts.query else []
    for i, pair in enumerate(pairs):
        name = pair.partition("=")[0]
        if is_secret_name(unquote_plus(name), names):
            pairs[i] = f"{name}={MASK}"
    return urlunsplit(parts._replace(netloc=netloc, query="&".join(pairs)))


def masked_mapping(value: Any, names: Collection[str] = ()) -> Any:
    """``value`` with every item under a credential-named key masked, at any depth (for the
    short views of given values that validation errors show)."""
    if isinstance(value, Mapping):
        return {
            k: MASK if isinstance(k, str) and is_secret_name(k, names) else masked_mapping(v, names)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [masked_mapping(v, names) for v in value]
    return value


class SecretDict(dict[str, Any]):
    """A dict (headers, extra body fields) whose repr masks credential-named entries, so no
    debugger or ``vars()`` dump shows one; as a mapping it is the dict itself, to send."""

    __slots__ = ("names",)

    def __init__(self, items: Mapping[str, Any], names: Collection[str] = ()) -> None:
        super().__init__(items)
        self.names = frozenset(names)

    def __repr__(self) -> str:
        return repr(masked_mapping(dict(self), self.names))


class SecretURL(str):
    """A URL whose repr masks its credentials; as a string it is the URL itself, to send to."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(mask_url(self))


def _header_credentials(value: str) -> set[str]:
    """The secrets in one header value: the whole value, the credential after a scheme
    (``Bearer <key>``), and for ``Basic`` the decoded password."""
    value = value.strip()
    found = {value}
    scheme, _, credential = value.partition(" ")
    credential = credential.strip()
    if credential:
        found.add(credential)
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credential, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            _user, _, password = decoded.partition(":")
            found.update(part for part in (password, decoded) if part)
    return found


def _url_credentials(url: str, names: Collection[str]) -> set[str]:
    """The secrets of a URL: the password of ``user:password@`` as written and decoded, the
    ``Basic`` credential an HTTP client builds from it, and credential query values."""
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:  # not a URL after all (an unbalanced bracket, a bad port)
        return set()
    found: set[str] = set()
    if password:
        plain = f"{unquote(user or '')}:{unquote(password)}"
        found.update({password, unquote(password), base64.b64encode(plain.encode()).decode()})
    found.update(
        value
        for name, value in parse_qsl(parts.query, keep_blank_values=False)
        if is_secret_name(name, names)
    )
    return found
