"""Which ``Host`` names this server answers for: the defence against DNS rebinding.

A page on ``evil.example`` can point that name at 127.0.0.1 once the browser
has loaded it; its requests then reach this server as same-origin requests
(``Origin`` and ``Host`` both ``evil.example``), so no Origin check can tell.
Only the ``Host`` header gives them away: the server answers for the names it
is meant to be reached by, and for nothing else (Django's ``ALLOWED_HOSTS``).

Allowed: ``localhost`` (and ``*.localhost``, which browsers resolve to
loopback themselves), loopback addresses, ``web.host``, and the entries of
``unmarked.allowed_hosts`` (a name, ``.example.org`` for that name and its
subdomains, or ``*`` for any). A server bound to every interface
(``web.host`` 0.0.0.0 or ::) also answers for IP addresses: a rebinding
attack needs a name, an address cannot be re-pointed.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

WILDCARD_BINDS = {"0.0.0.0", "::", ""}


def hostname(host: str) -> str:
    """The name or address of a ``Host`` header, without port and brackets."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8337
        return host[1:host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _address(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _listed(name: str, entry: str) -> bool:
    entry = hostname(entry)
    if entry == "*":
        return True
    if entry.startswith("."):
        return name == entry[1:] or name.endswith(entry)
    return name == entry


def allowed(host: str, web_host: str, allowed_hosts: Iterable[str]) -> bool:
    """Whether a request with this ``Host`` header is for this server."""
    name = hostname(host)
    if not name:
        return False
    if name == "localhost" or name.endswith(".localhost"):
        return True
    address = _address(name)
    if address is not None and address.is_loopback:
        return True
    bound = hostname(web_host)
    if name == bound or (address is not None and bound in WILDCARD_BINDS):
        return True
    return any(_listed(name, entry) for entry in allowed_hosts)
