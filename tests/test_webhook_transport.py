"""How deliveries reach receivers: which addresses a webhook may reach (SSRF), checked on the
address a delivery actually connects to; https in production; kept connections."""

import socket
import threading
import time

import pytest

from qrevents.errors import ValidationFailed
from qrevents.services.webhooks import check_url
from qrevents.webhooks.addresses import is_public
from qrevents.webhooks.transport import EndpointConnection


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.0.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared address space
        "0.0.0.0",
        "224.0.0.1",
        "224.0.1.1",  # multicast, even the "global" block
        "255.255.255.255",
        "240.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
    ],
)
def test_private_loopback_link_local_metadata_and_reserved_addresses_are_not_public(address):
    assert not is_public(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_global_unicast_addresses_are_public(address):
    assert is_public(address)


def test_a_delivery_to_a_private_address_is_refused_after_connecting(receiver):
    connection = EndpointConnection(receiver.url(), allow_private=False, timeout=2)
    attempt = connection.post(b"{}", {})
    assert attempt.outcome == "address_refused" and attempt.status is None
    assert "127.0.0.1" in attempt.error
    assert receiver.at() == []  # not one byte of the request reached it


def test_the_same_delivery_passes_when_private_addresses_are_allowed(receiver):
    connection = EndpointConnection(receiver.url(), allow_private=True, timeout=2)
    assert connection.post(b"{}", {}).outcome == "success"
    assert connection.post(b"{}", {}).outcome == "success"  # over the same connection
    assert len(receiver.at()) == 2


def test_production_requires_https():
    with pytest.raises(ValidationFailed) as refused:
        check_url("http://127.0.0.1/hook", allow_private=True, production=True)
    assert refused.value.fields == {"url": "debe usar https://"}
    check_url("https://127.0.0.1/hook", allow_private=True, production=True)


def test_registration_resolves_the_host_and_refuses_a_name_for_loopback():
    with pytest.raises(ValidationFailed) as refused:
        check_url("http://localhost:8080/hook", allow_private=False, production=False)
    assert "localhost" in refused.value.fields["url"]


def test_a_kept_connection_the_receiver_closed_while_idle_is_reopened_not_a_failure():
    """Receivers close idle keep-alive connections (gunicorn after 2 s, nginx after 75 s):
    the next delivery goes on a new connection instead of failing and waiting a backoff."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    served = []

    def serve():
        for _ in range(2):
            conn, _ = listener.accept()
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(4096)
                served.append(request.split(b"\r\n", 1)[0])
                conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                time.sleep(0.1)  # then closes it, idle, as a receiver's keep-alive timeout does

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    connection = EndpointConnection(f"http://127.0.0.1:{port}/hook", allow_private=True, timeout=2)
    assert connection.post(b"{}", {}).outcome == "success"
    time.sleep(0.3)
    second = connection.post(b"{}", {})
    assert second.outcome == "success", second
    assert served == [b"POST /hook HTTP/1.1"] * 2
    thread.join(2)
    listener.close()


def test_an_https_receiver_whose_certificate_is_not_trusted_is_a_failure(tmp_path):
    """TLS is verified as browsers verify it: a self-signed receiver gets nothing."""
    import ssl
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    handshakes = []

    def serve():
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                handshakes.append(tls.recv(100))
        except (ssl.SSLError, OSError) as refused:
            handshakes.append(refused)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    connection = EndpointConnection(f"https://localhost:{port}/", allow_private=True, timeout=2)
    attempt = connection.post(b"{}", {})
    assert attempt.outcome == "connection_error" and "CERTIFICATE_VERIFY_FAILED" in attempt.error
    thread.join(2)
    listener.close()
    assert handshakes and not isinstance(handshakes[0], bytes)  # no request was read


@pytest.mark.parametrize(
    "settings, says",
    [
        ({"QREVENTS_ENV": "production", "QREVENTS_WEBHOOK_ALLOW_PRIVATE": "1"}, "ALLOW_PRIVATE"),
        (
            {"QREVENTS_WEBHOOK_TIMEOUT_SECONDS": "10", "QREVENTS_WEBHOOK_LEASE_SECONDS": "12"},
            "LEASE",
        ),
    ],
    ids=["private-in-production", "lease-shorter-than-an-attempt"],
)
def test_webhook_settings_that_would_break_a_promise_stop_the_start(tmp_path, settings, says):
    from qrevents.config import ConfigError, load_config

    environ = {
        "QREVENTS_JWT_SECRET_KEY": "x" * 40,
        "QREVENTS_ADMIN_API_KEY": "qra_x",
        "QREVENTS_BANK_WEBHOOK_SECRET": "y" * 40,
        "QREVENTS_SECRET_KEY": "z" * 40,
        **settings,
    }
    with pytest.raises(ConfigError, match=says):
        load_config(environ, tmp_path)
