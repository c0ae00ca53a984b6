"""``flask --app app ...`` commands: bootstrap, bank links, the demo (with its simulated
bank), a payment at the simulator, reconciliation, the sweeps."""

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path

import click
import peewee
import requests
from flask import current_app

from models import Account, BankLink, Qr, User, database
from models.migrations import LATEST, migrate, schema_version

from .bodies import bank_link
from .errors import ApiError
from .exact_json import dumps
from .money import CURRENCIES
from .resources import bank_link_json
from .services import accounts, bank_links, bank_sync
from .services.qrs import expire_overdue
from .services.retention import prune

DEMO_EMAIL = "demo@qrevents.test"


def main():
    """``qrevents <command>``, the command of an installed server: these commands (and
    Flask's own) without ``flask --app``."""
    from flask.cli import FlaskGroup

    from . import create_app

    FlaskGroup(create_app=create_app)(prog_name="qrevents")


def register_commands(app):
    for command in (
        migrate_command,
        init_db,
        create_account,
        create_user,
        create_api_key,
        demo,
        bank_link_command,
        bank_pay,
        bank_reconcile,
        expire_qrs,
        prune_events,
    ):
        app.cli.add_command(command)


@click.command("migrate")
def migrate_command():
    """Apply the pending schema migrations (run before starting a new release)."""
    applied, version = _migrate()
    if applied:
        click.echo(f"applied migrations {', '.join(map(str, applied))}")
    click.echo(f"database at schema version {version} (this release needs {LATEST})")


@click.command("init-db")
def init_db():
    """The same as ``migrate`` (the first release's name for it, and its one-line answer)."""
    _migrate()
    click.echo("database ready")


def _migrate():
    """``(versions applied by this process, the database's version)``."""
    # Loading the app (create_app) already migrated a database that was behind.
    applied = list(current_app.extensions["qrevents.schema"].applied)
    with database.connection_context():
        applied += migrate(database)
        return applied, schema_version(database)


@click.command("create-account")
@click.argument("name")
@click.option("--currency", type=click.Choice(CURRENCIES), default="BOB", show_default=True)
def create_account(name, currency):
    """Create an account."""
    with database.connection_context():
        account = accounts.create_account(name, currency)
    click.echo(json.dumps({"id": account.id, "name": account.name, "currency": currency}))


@click.command("create-user")
@click.argument("account_id", type=int)
@click.argument("email")
@click.option("--name", required=True)
@click.password_option()
def create_user(account_id, email, name, password):
    """Create a user of an account (asks for the password)."""
    with database.connection_context():
        user = accounts.create_user(account_id, email, password, name)
    click.echo(json.dumps({"id": user.id, "email": user.email, "accountId": account_id}))


@click.command("create-api-key")
@click.argument("account_id", type=int)
@click.argument("name")
@click.option("--user-id", type=int, default=None)
def create_api_key(account_id, name, user_id):
    """Create an API key; it is printed once."""
    with database.connection_context():
        row, key = accounts.create_api_key(account_id, name, user_id=user_id)
    click.echo(json.dumps({"id": row.id, "key": key}))


@click.command("bank-link")
@click.argument("account_id", type=int)
@click.option("--adapter", type=click.Choice(bank_links.ADAPTERS), required=True)
@click.option("--base-url", required=True, help="The bank's ApiGateway base URL.")
@click.option("--user-name", required=True)
@click.option("--password", prompt=True, hide_input=True, help="Asked for when not given.")
@click.option("--aes-key", prompt=True, hide_input=True, help="Asked for when not given.")
@click.option("--account-number", prompt=True, hide_input=True, help="Asked for when not given.")
@click.option("--branch-code", default=None)
def bank_link_command(account_id, **options):
    """Link an account to its bank (secrets are asked for, stored encrypted, never printed)."""
    body = {
        "adapter": options["adapter"],
        "baseUrl": options["base_url"],
        "userName": options["user_name"],
        "password": options["password"],
        "aesKey": options["aes_key"],
        "accountNumber": options["account_number"],
        "branchCode": options["branch_code"],
    }
    try:
        link = bank_link(body)
        with database.connection_context():
            row, _ = bank_links.link_account(account_id, link)
            click.echo(dumps(bank_link_json(row)))
    except ApiError as error:
        raise click.ClickException(_one_line(error)) from None


def _one_line(error):
    if error.fields:
        return "; ".join(f"{name} {message}" for name, message in error.fields.items())
    return error.message


@click.command("bank-reconcile")
@click.option(
    "--date",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="La Paz date whose paid QRs (and the day before's) are listed (default: today).",
)
def bank_reconcile(day):
    """Record the payments the notifications missed and sync QR statuses, once, now."""
    settings = current_app.config["QREVENTS"]
    done = bank_sync.reconcile(day=day.date() if day else None, batch=settings.bank_sync_batch)
    for account_id, recovered in done.items():
        click.echo(f"account {account_id}: {len(recovered)} payment(s) recovered")
    click.echo(f"reconciled {len(done)} linked account(s)")


def simulator_url(bind):
    """Where ``make run`` serves the simulated bank: the server's port plus one."""
    host, _, port = bind.rpartition(":")
    return f"http://{host}:{int(port) + 1}"


DEMO_BANK_FILE = "demo-bank.json"


def _demo_bank(instance_path):
    """The demo merchant's credentials at the simulated bank (made once, kept in instance/)."""
    path = Path(instance_path) / DEMO_BANK_FILE
    if path.exists():
        return json.loads(path.read_text())
    creds = {
        "userName": "comercio-demo",
        "password": secrets.token_urlsafe(12),
        "aesKey": secrets.token_hex(16),
        "accountNumber": f"{secrets.randbelow(10**10):010d}",
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(creds, handle)
    return creds


def link_demo_account(account_id, bank_url, server_url):
    """Register the demo merchant at the simulator (its notification URL is this server) and
    link the demo account to it."""
    settings = current_app.config["QREVENTS"]
    creds = _demo_bank(current_app.instance_path)
    registered = requests.post(
        bank_url + "/simulator/accounts",
        json={
            **creds,
            "notifyUrl": server_url + "/api/qrsimple/notifyPaymentQR",
            "notifyBearer": settings.bank_webhook_secret,
        },
        timeout=5,
    )
    if registered.status_code not in (200, 201, 409):
        raise click.ClickException(f"the simulator refused the demo merchant: {registered.text}")
    link = bank_link({"adapter": "simulator", "baseUrl": bank_url + "/ApiGateway/", **creds})
    bank_links.link_account(account_id, link)


@click.command("demo")
@click.option("--serve", is_flag=True, help="Also start the simulated bank and the server.")
@click.option(
    "--bank-url", default=None, help="The simulated bank (default: QREVENTS_BIND's port + 1)."
)
def demo(serve, bank_url):
    """Create (or reuse) a demo account linked to the simulated bank; print how to use it.

    With ``--serve`` (``make run``) start the simulated bank first and the server after,
    and stop both on Ctrl-C.
    """
    settings = current_app.config["QREVENTS"]
    base = "http://" + settings.bind
    bank_url = (bank_url or simulator_url(settings.bind)).rstrip("/")
    simulator = _start_simulator(bank_url) if serve else None
    try:
        creds = _bootstrap_demo(bank_url, base)
        _print_demo(creds, base, bank_url)
        if serve:
            _serve(simulator)
    finally:
        if simulator is not None:
            _stop(simulator)


def _bootstrap_demo(bank_url, base):
    creds_path = Path(current_app.instance_path) / "demo-credentials.json"
    with database.connection_context():
        creds = _load_demo(creds_path)
        if creds is None:
            account = accounts.create_account("Comercio Demo", "BOB")
            password = secrets.token_urlsafe(12)
            user = accounts.create_user(account.id, DEMO_EMAIL, password, "Demo")
            _, key = accounts.create_api_key(account.id, "demo", user_id=user.id)
            creds = {
                "accountId": account.id,
                "email": DEMO_EMAIL,
                "password": password,
                "apiKey": key,
            }
            fd = os.open(creds_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(creds, handle)
        try:
            link_demo_account(creds["accountId"], bank_url, base)
        except requests.RequestException:
            click.echo(
                f"(the simulated bank does not answer at {bank_url}: the demo account is not "
                "linked to it, and cannot create QRs until it is; `make run` starts it)",
                err=True,
            )
    return creds


def _print_demo(creds, base, bank_url):
    key = creds["apiKey"]
    click.echo(f"""\
qrevents demo account {creds["accountId"]}
  email:    {creds["email"]}
  password: {creds["password"]}
  API key:  {key}
  dashboard: {base}/dashboard
  simulated bank (its QRs, with a "Pagar" button): {bank_url}/

Open a stream (leave it running):
  curl -N -H 'Authorization: Bearer {key}' {base}/events/stream

Create a QR at the (simulated) bank, in another terminal:
  curl -s -X POST {base}/qr -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\
       -d '{{"amount": 100.50, "currency": "BOB", "description": "Pago de servicios"}}'

Pay it: click "Pagar" at {bank_url}/ or, with QRID the "qrId" the call above returned:
  .venv/bin/flask --app app bank-pay QRID
""")


def _start_simulator(bank_url):
    """The simulated bank in a process of its own, its state in instance/; ready when this
    returns."""
    bind = bank_url.removeprefix("http://")
    state = Path(current_app.instance_path) / "simulator.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "qrevents.simulator", "--bind", bind, "--state", str(state)]
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise click.ClickException(f"the simulated bank did not start on {bind}")
        try:
            requests.get(bank_url + "/simulator/qrs", timeout=1)
            return process
        except requests.RequestException:
            time.sleep(0.1)
    _stop(process)
    raise click.ClickException(f"the simulated bank did not answer on {bind} within 15 s")


def _serve(simulator):
    """gunicorn in the foreground until Ctrl-C (or either process ends)."""
    server = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "app:app"])
    try:
        while server.poll() is None and simulator.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        _stop(server)


def _stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _load_demo(path):
    """The saved demo credentials, if they still work against this database."""
    if not path.exists():
        return None
    creds = json.loads(path.read_text())
    user = User.get_or_none(User.email == creds.get("email"))
    if user is None or Account.get_or_none(Account.id == creds.get("accountId")) is None:
        return None
    return creds


@click.command("bank-pay")
@click.argument("qr_id")
@click.argument("amount", required=False)
@click.option("--sender-name", default="Juan Pérez", show_default=True)
@click.option("--bank-url", default=None, help="The simulator (default: from the QR's link).")
def bank_pay(qr_id, amount, sender_name, bank_url):
    """Pay QR_ID at the simulated bank (its amount unless AMOUNT); the bank notifies us."""
    body = {"qrId": qr_id, "senderName": sender_name}
    if amount is not None:
        try:
            body["amount"] = Decimal(amount)
        except InvalidOperation:
            raise click.BadParameter("must be a number", param_hint="AMOUNT") from None
    server_url = "http://" + current_app.config["QREVENTS"].bind
    try:
        requests.get(server_url + "/health", timeout=5)
    except requests.RequestException:
        raise click.ClickException(
            f"qrevents does not answer at {server_url}: the bank's notification would find "
            "nobody (is `make run` running?)"
        ) from None
    bank_url = bank_url or _simulator_of(qr_id)
    try:
        response = requests.post(
            bank_url + "/simulator/pay",
            data=dumps(body),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
    except requests.RequestException:
        raise click.ClickException(
            f"the simulated bank does not answer at {bank_url} (is `make run` running?)"
        ) from None
    if response.status_code >= 400:
        raise click.ClickException(f"the simulated bank refused: {response.text.strip()}")
    click.echo(response.text.strip())


def _simulator_of(qr_id):
    """The simulator the QR's account is linked to, else the one ``make run`` starts."""
    fallback = simulator_url(current_app.config["QREVENTS"].bind)
    try:
        with database.connection_context():
            link = (
                BankLink.select(BankLink.base_url)
                .join(Qr, on=(Qr.account == BankLink.account))
                .where(Qr.qr_id == qr_id)
                .first()
            )
    except peewee.OperationalError:  # no database here: the default simulator may still pay
        return fallback
    if link is None:
        return fallback
    return link.base_url.split("/ApiGateway", 1)[0].rstrip("/")


@click.command("expire-qrs")
def expire_qrs():
    """Expire overdue QRs once (every worker also does this periodically)."""
    with database.connection_context():
        click.echo(f"expired {expire_overdue()} QRs")


@click.command("prune-events")
@click.option(
    "--days",
    type=click.IntRange(min=0),
    default=None,
    help="Default: QREVENTS_EVENT_RETENTION_DAYS.",
)
def prune_events(days):
    """Delete events older than the retention, and expired stream tickets, once."""
    if days is None:
        days = current_app.config["QREVENTS"].event_retention_days
    with database.connection_context():
        events, tickets = prune(days)
    click.echo(f"pruned {events} events older than {days} days and {tickets} expired tickets")
