"""The bank from the command line: linking, the demo with its simulated bank (``make run``),
and ``bank-pay`` through the simulator, failing in one line when something is down."""

import json
import re
import signal
import socket
import subprocess
import time

import requests

from tests.bank_sim import BankSimulator
from tests.live import BIN, ROOT, Api, LiveServer, free_port
from tests.test_cli import flask


def test_bank_link_command_links_without_printing_a_secret(make_server, tmp_path):
    server = make_server()
    simulator = BankSimulator(tmp_path).start()
    try:
        api = Api(server.base, simulator=simulator)
        tenant = api.new_tenant(bank=False)
        link = simulator.register()
        linked = flask(
            server,
            "bank-link",
            str(tenant.account_id),
            "--adapter=simulator",
            f"--base-url={simulator.base_url}",
            f"--user-name={link.user_name}",
            f"--password={link.password}",
            f"--aes-key={link.aes_key}",
            f"--account-number={link.account_number}",
        )
        assert linked.returncode == 0, linked.stderr
        assert json.loads(linked.stdout)["accountId"] == tenant.account_id
        for secret in (link.password, link.aes_key, link.account_number):
            assert secret not in linked.stdout + linked.stderr
        assert api.create_qr(tenant)["status"] == "active"
        refused = flask(
            server,
            "bank-link",
            str(tenant.account_id),
            "--adapter=simulator",
            f"--base-url={simulator.base_url}",
            "--user-name=x",
            "--password=y",
            "--aes-key=corta",
            "--account-number=123",
        )
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert refused.stderr.strip().splitlines() == [
            "Error: aesKey debe ser la clave de 32 caracteres que entregó el banco"
        ]
    finally:
        simulator.stop()


def test_bank_pay_fails_in_one_line_when_the_server_or_the_bank_is_down(make_server):
    server = make_server()
    api = Api(server.base)
    tenant = api.new_tenant()
    qr = api.create_qr(tenant)
    no_bank = flask(server, "bank-pay", qr["qrId"], "--bank-url", f"http://127.0.0.1:{free_port()}")
    server.stop()
    no_server = flask(server, "bank-pay", qr["qrId"])
    for result in (no_bank, no_server):
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr
    assert "simulated bank does not answer" in no_bank.stderr
    assert "qrevents does not answer" in no_server.stderr


def test_make_run_serves_the_whole_loop_and_stops_both_on_ctrl_c(tmp_path):
    """``flask demo --serve`` (what ``make run`` runs): the simulated bank beside the server,
    the demo account linked to it; a QR issued by the bank, paid with ``bank-pay``, and the
    payment arriving; Ctrl-C stops both."""
    port = free_port()
    while True:  # the bank takes the next port: both must be free
        try:
            with socket.create_server(("127.0.0.1", port + 1)):
                break
        except OSError:
            port = free_port()
    env = LiveServer(tmp_path, port=port).env
    env["QREVENTS_DATABASE_URL"] = f"sqlite:///{tmp_path / 'demo.db'}"
    env["QREVENTS_INSTANCE_PATH"] = str(tmp_path / "instance")
    subprocess.run([str(BIN / "flask"), "--app", "app", "init-db"], cwd=ROOT, env=env, check=True)
    log = open(tmp_path / "demo.log", "w")
    demo = subprocess.Popen(
        [str(BIN / "flask"), "--app", "app", "demo", "--serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    base, bank = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"
    try:
        printed = ""
        while "bank-pay" not in printed:
            line = demo.stdout.readline()
            assert line, (tmp_path / "demo.log").read_text()
            printed += line
        key = re.search(r"API key:\s+(qrk_\S+)", printed).group(1)
        assert f"{bank}/" in printed and "Pagar" in printed
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(base + "/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, (tmp_path / "demo.log").read_text()
            time.sleep(0.1)
        headers = {"Authorization": f"Bearer {key}"}
        qr = requests.post(
            base + "/qr",
            json={"amount": 12.5, "currency": "BOB", "description": "Demo"},
            headers=headers,
            timeout=10,
        )
        assert qr.status_code == 201, qr.text
        qr_id = qr.json()["data"]["qrId"]
        assert qr_id in requests.get(bank + "/", timeout=5).text  # on the bank's page
        paid = subprocess.run(
            [str(BIN / "flask"), "--app", "app", "bank-pay", qr_id],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert paid.returncode == 0, paid.stderr
        deadline = time.monotonic() + 10
        while (
            requests.get(base + "/payments", headers=headers, timeout=5).json()["data"]["items"]
            == []
        ):
            assert time.monotonic() < deadline, "the bank's notification never arrived"
            time.sleep(0.1)
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(20)
        log.close()
    for url in (base + "/health", bank + "/"):
        try:
            requests.get(url, timeout=1)
            raise AssertionError(f"{url} still answers after Ctrl-C")
        except requests.ConnectionError:
            pass
