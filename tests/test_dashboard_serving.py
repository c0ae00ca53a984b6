"""What the dashboard needs from the server, over plain HTTP: the page, its scripts, and
each QR's picture (the bank's PNG) for the account that owns it."""

import re

import requests

from tests.live import shared_simulator


def test_dashboard_page_is_served_with_a_strict_content_security_policy(api):
    response = api.get("/dashboard")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "form-action 'none'" in policy
    assert "'unsafe-inline'" not in policy
    assert 'src="static/dashboard/app.js"' in response.text


def test_browser_client_and_dashboard_scripts_are_served_as_javascript(api):
    for path in ("/static/qrevents.js", "/static/dashboard/app.js", "/static/dashboard/state.js"):
        response = api.get(path)
        assert response.status_code == 200, path
        assert re.match(r"(text|application)/javascript", response.headers["Content-Type"]), path


def test_qr_image_is_the_banks_png(api, tenant):
    """What a payer scans is the bank's picture, served as the bank drew it."""
    qr = api.create_qr(tenant, "1100.50")
    response = api.get(f"/qr/{qr['qrId']}/image.png", headers=tenant.headers)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    drawn_by_bank = requests.get(
        shared_simulator().root + f"/simulator/qr/{qr['qrId']}/image.png", timeout=10
    )
    assert response.content == drawn_by_bank.content
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")


def test_qr_image_needs_a_credential(api, tenant):
    qr = api.create_qr(tenant)
    response = api.get(f"/qr/{qr['qrId']}/image.png")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_credentials"


def test_qr_image_of_another_account_is_not_found(api, tenant):
    qr = api.create_qr(tenant)
    stranger = api.new_tenant()
    response = api.get(f"/qr/{qr['qrId']}/image.png", headers=stranger.headers)
    assert response.status_code == 404
    assert response.json()["success"] is False
