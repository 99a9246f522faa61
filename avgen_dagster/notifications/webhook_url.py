"""Which webhook URLs avgen may POST to: the check against server-side request forgery.

A ``callback_url`` is an address a user chooses and avgen's workers then call; without a check
it would reach what only the server can reach (a cloud metadata endpoint at 169.254.169.254, a
database on localhost, the office network). OWASP's SSRF Prevention Cheat Sheet: allow http and
https only, no credentials in the URL, resolve the host and refuse every address that is not
public. Here an address is refused when it is loopback, private (RFC 1918, fc00::/7),
link-local, unspecified, multicast, reserved or otherwise not globally routable
(``ipaddress``'s ``is_global``; an IPv4-mapped IPv6 address is judged as its IPv4 address),
unless the operator allows it with ``AVGEN_WEBHOOK_ALLOW_HOSTS`` (host names, IP addresses or
CIDR networks, e.g. ``127.0.0.1,hooks.internal,10.1.0.0/16``).

The check runs at intake and again before every send (a name may resolve elsewhere by then:
DNS rebinding); redirects are never followed. No Dagster.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from avgen_dagster.errors import InvalidInputError

MAX_URL_CHARS = 2048
Resolver = Callable[[str, int], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (``socket.getaddrinfo``, TCP).

    Raises:
        OSError: the name does not resolve.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def _address(text: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _allowed(host: str, ip: IPAddress | None, allow: Sequence[str]) -> bool:
    for entry in allow:
        if entry == host.lower():
            return True
        if ip is None:
            continue
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue  # a host name entry
    return False


def _why_not_public(ip: IPAddress) -> str | None:
    for attribute, words in (
        ("is_unspecified", "an unspecified"),
        ("is_loopback", "a loopback"),
        ("is_link_local", "a link-local"),
        ("is_private", "a private"),
        ("is_multicast", "a multicast"),
        ("is_reserved", "a reserved"),
    ):
        if getattr(ip, attribute):
            return words
    return None if ip.is_global else "a non-public"


def check_callback_url(
    url: str, *, allow_hosts: Sequence[str] = (), resolve: Resolver = resolve_host
) -> str:
    """``url`` stripped, if avgen may POST webhooks to it (see the module docstring).

    Args:
        allow_hosts: host names, addresses or CIDR networks allowed although not public
            (lower case; ``Settings.webhook_allow_hosts``).
        resolve: the name resolver (tests may pass one; default the system's).

    Raises:
        InvalidInputError: naming ``callback_url`` and why: not http(s), credentials, no host,
            a bad port, too long, unresolvable, or an address that is not public.
    """
    text = (url or "").strip()
    if len(text) > MAX_URL_CHARS:
        raise InvalidInputError(f"callback_url is {len(text)} characters; the limit is 2048")
    try:
        parts = urlsplit(text)
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError as exc:
        raise InvalidInputError(f"callback_url {text[:200]!r} is not a valid URL: {exc}") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInputError(f"callback_url {text[:200]!r} must be an http or https URL")
    if parts.username is not None or parts.password is not None:
        raise InvalidInputError("callback_url must not carry a user name or password")
    host = parts.hostname
    if not host:
        raise InvalidInputError(f"callback_url {text[:200]!r} has no host")
    literal = _address(host)
    if _allowed(host, literal, allow_hosts):
        return text
    try:
        addresses = [literal] if literal is not None else [_address(a) for a in resolve(host, port)]
    except (OSError, UnicodeError) as exc:
        raise InvalidInputError(f"callback_url host {host!r} does not resolve: {exc}") from exc
    if not addresses:
        raise InvalidInputError(f"callback_url host {host!r} does not resolve")
    for ip in addresses:
        if ip is None:
            raise InvalidInputError(f"callback_url host {host!r} resolves to a non-IP address")
        if _allowed(host, ip, allow_hosts):
            continue
        if why := _why_not_public(ip):
            raise InvalidInputError(
                f"callback_url host {host!r} is {ip}, {why} address; webhooks go to "
                "public addresses only (an operator can allow it with AVGEN_WEBHOOK_ALLOW_HOSTS)"
            )
    return text
