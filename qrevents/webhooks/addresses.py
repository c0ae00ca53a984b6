"""Which addresses a webhook may reach: public unicast only (no SSRF into our own network).

Checked when an endpoint is registered (every address its host resolves to) and again on
every connection a delivery opens (the address actually connected to, so a DNS answer that
changes after registration cannot point a delivery inside). Redirects are never followed.
"""

import ipaddress
import socket
from urllib.parse import urlsplit

# NAT64's well-known prefix embeds an IPv4 address in the last 32 bits.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class AddressRefused(Exception):
    """The webhook's host is (or resolves to) an address a delivery must not reach."""


def is_public(address):
    """Whether ``address`` (text or ``ip_address``) is a global unicast address.

    Loopback, private, link-local (169.254.169.254, the cloud metadata service, included),
    unique-local (fd00:ec2::254), shared (100.64/10), multicast, reserved and unspecified
    addresses are not; nor is an IPv6 address that embeds one of those IPv4 addresses.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo or (None, None))[1]
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and not is_public(embedded):
            return False
    return ip.is_global and not ip.is_multicast


def check_url_host(url, *, allow_private):
    """Resolve the URL's host and refuse it if any address is not public.

    ``AddressRefused`` says why (in Spanish: it reaches the user). Resolution runs on
    gevent's resolver under gunicorn, so it parks only the calling greenlet.
    """
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise AddressRefused(f"no se pudo resolver el host {parts.hostname}") from None
    if allow_private:
        return
    for *_, sockaddr in infos:
        if not is_public(sockaddr[0].split("%", 1)[0]):
            raise AddressRefused(
                f"{parts.hostname} resuelve a {sockaddr[0]}, una dirección privada, local o "
                "reservada"
            )


def check_peer(sock, *, allow_private):
    """Refuse a connection already made to an address that is not public (closes it)."""
    if allow_private:
        return
    peer = sock.getpeername()[0].split("%", 1)[0]
    if not is_public(peer):
        sock.close()
        raise AddressRefused(f"conexión a {peer} rechazada: dirección privada, local o reservada")
