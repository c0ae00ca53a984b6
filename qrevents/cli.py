"""``flask --app app ...`` commands: bootstrap, the demo, a signed bank payment, the sweep."""

import json
import os
import secrets
import urllib.error
import urllib.request
from decimal import Decimal, InvalidOperation
from pathlib import Path

import click
from flask import current_app

from models import Account, User, database
from models.migrations import LATEST, migrate, schema_version

from . import bank_signature
from .clock import iso, utcnow
from .money import CURRENCIES
from .services import accounts
from .services.qrs import expire_overdue
from .services.retention import prune
from .sse import dumps

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
        bank_pay,
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


@click.command("demo")
def demo():
    """Create (or reuse) a demo account, user and API key, and print how to use them."""
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
    base = "http://" + current_app.config["QREVENTS"]["BIND"]
    key = creds["apiKey"]
    click.echo(f"""\
qrevents demo account {creds["accountId"]}
  email:    {creds["email"]}
  password: {creds["password"]}
  API key:  {key}
  dashboard: {base}/dashboard

Open a stream (leave it running):
  curl -N -H 'Authorization: Bearer {key}' {base}/events/stream

Create a QR (in another terminal):
  curl -s -X POST {base}/qr -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\
       -d '{{"amount": 100.50, "currency": "BOB", "description": "Pago de servicios"}}'

Pay it as the bank would (a signed callback; QRID is the "qrId" the call above returned):
  .venv/bin/flask --app app bank-pay QRID 100.50
""")


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
@click.argument("amount")
@click.option("--transaction-id", default=None, help="The bank's id (random by default).")
@click.option("--currency", type=click.Choice(CURRENCIES), default="BOB", show_default=True)
@click.option("--url", default=None, help="Server base URL (default: http://QREVENTS_BIND).")
def bank_pay(qr_id, amount, transaction_id, currency, url):
    """Send a signed bank payment notification for QR_ID to the running server."""
    try:
        exact_amount = Decimal(amount)
    except InvalidOperation:
        raise click.BadParameter("must be a number", param_hint="AMOUNT") from None
    settings = current_app.config["QREVENTS"]
    body = dumps(
        {
            "qrId": qr_id,
            "transactionId": transaction_id or "BNK" + secrets.token_hex(8).upper(),
            "amount": exact_amount,
            "currency": currency,
            "senderName": "Juan Pérez",
            "senderDocumentId": "12345678",
            "senderAccount": "1234567890",
            "senderBankCode": "BANECO",
            "description": "Pago de servicios",
            "paymentDate": iso(utcnow()),
        }
    ).encode()
    request = urllib.request.Request(
        (url or "http://" + settings["BIND"]) + "/bank/payments",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-Bank-Signature": bank_signature.sign(settings["BANK_WEBHOOK_SECRET"], body),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            click.echo(response.read().decode())
    except urllib.error.HTTPError as error:
        click.echo(error.read().decode(), err=True)
        raise SystemExit(1) from None


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
        days = current_app.config["QREVENTS"]["EVENT_RETENTION_DAYS"]
    with database.connection_context():
        events, tickets = prune(days)
    click.echo(f"pruned {events} events older than {days} days and {tickets} expired tickets")
