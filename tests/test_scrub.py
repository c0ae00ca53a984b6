"""Log scrubbing rules, one by one (the live test in test_logs.py runs them through gunicorn)."""

import pytest

from qrevents.scrub import SCRUBBED, scrub_header, scrub_message, scrub_text

KEY = "qrk_KzeGc6CNxtHObAfjThBYzJGaKoQpJyhOgTVn4icweds"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIiwiYWNjIjoxfQ.c2lnbmF0dXJlLW9mLWF0LWxlYXN0LTMy"


@pytest.mark.parametrize(
    "text, kept",
    [
        (f"GET /accounts/me?api-key={KEY} HTTP/1.1", "GET /accounts/me?api-key="),
        (f"limit=5&token={JWT}&x=1", "limit=5&token="),
        ("GET /x?%74oken=opaque-value HTTP/1.1", "?%74oken="),
        ("GET /x?to%256Ben=opaque-value HTTP/1.1", "?to%256Ben="),  # encoded twice
        ("GET /x?ticket=qrt_abc HTTP/1.1", "?ticket="),
        (f"/qr/{KEY}", "/qr/"),
        ("/qr/%71rk_KzeGc6CNxtHObAfjThBYzJGa", "/qr/"),  # an encoded prefix
        (f"Referer https://shop.example/?next={JWT}", "?next="),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic "),
        ("x bearer opaque-bank-secret y", "x bearer "),
    ],
)
def test_credentials_are_cut_and_the_rest_kept(text, kept):
    scrubbed = scrub_text(text)
    assert kept in scrubbed and SCRUBBED in scrubbed
    assert "opaque" not in scrubbed and KEY[4:] not in scrubbed and JWT[20:] not in scrubbed


@pytest.mark.parametrize(
    "text",
    ["/accounts/me", "/qr/26113000038100361240", "GET /qr?status=active&limit=5 HTTP/1.1",
     "/payments/BNKD7EA7C7970F94CD0/release", "python-requests/2.34.2"],
)  # fmt: skip
def test_lines_without_a_credential_are_left_alone(text):
    assert scrub_text(text) == text


def test_a_quoted_auth_header_loses_all_that_follows_its_name():
    message = "Invalid HTTP Header: 'Authorization Bearer test-bank-secret'"
    assert scrub_message(message) == f"Invalid HTTP Header: 'Authorization {SCRUBBED}"


@pytest.mark.parametrize(
    "name", ["authorization", "x-api-key", "cookie", "set-cookie", "x-bank-signature",
             "HTTP_AUTHORIZATION", "HTTP_X_API_KEY", "x-auth-token"],
)  # fmt: skip
def test_secret_headers_are_scrubbed_whole(name):
    assert scrub_header(name, "anything at all") == SCRUBBED


def test_other_headers_are_scrubbed_only_of_credentials():
    assert scrub_header("user-agent", "curl/8.5") == "curl/8.5"
    assert scrub_header("referer", f"https://a.example/?token={JWT}") == (
        f"https://a.example/?token={SCRUBBED}"
    )
