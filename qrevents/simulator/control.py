"""What the simulated bank lets a test or a person do: register merchants, pay QRs, change a
QR behind the merchant's back, flip fault switches, and look at it all on a small page."""

import json
from datetime import datetime
from decimal import Decimal

import simplejson
from flask import Blueprint, Response, redirect, render_template_string, request, url_for

from .api import answer, bank, qr_png
from .faults import FaultError
from .ledger import ACTIVE, CANCELLED, LA_PAZ, PAID, Refused

bp = Blueprint("control", __name__)

STATUS_CODES = {"active": ACTIVE, "paid": PAID, "cancelled": CANCELLED}
STATUS_LABELS = {ACTIVE: "activo", PAID: "pagado", CANCELLED: "anulado"}

PAGE = """<!doctype html>
<html lang="es"><head><meta charset="utf-8"><title>Banco simulado</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse}
td,th{padding:.4rem .8rem;border-bottom:1px solid #ddd;text-align:left}
img{width:96px;height:96px;image-rendering:pixelated}.muted{color:#777}
</style></head><body>
<h1>Banco simulado (API QR Simple de BANECO)</h1>
<p class="muted">Los QR que emitió este banco, el más reciente primero. «Pagar» paga el QR por su
importe y avisa al comercio, como lo haría el banco.</p>
{% if message %}<p><strong>{{ message }}</strong></p>{% endif %}
<table><tr><th>QR</th><th>qrId</th><th>Importe</th><th>Descripción</th><th>Vence</th>
<th>Estado</th><th></th></tr>
{% for qr in qrs %}<tr>
<td><img alt="QR {{ qr.qr_id }}" src="{{ url_for('control.image', qr_id=qr.qr_id) }}"></td>
<td><code>{{ qr.qr_id }}</code></td><td>{{ qr.amount }} {{ qr.currency }}</td>
<td>{{ qr.description }}</td><td>{{ qr.due_date }}</td>
<td>{{ labels.get(qr.status, qr.status) }}</td>
<td>{% if qr.status == 0 or (qr.status == 1 and not qr.single_use) %}
<form method="post" action="{{ url_for('control.pay_from_page', qr_id=qr.qr_id) }}">
<button type="submit">Pagar</button></form>{% endif %}</td>
</tr>{% else %}<tr><td colspan="7" class="muted">Todavía no hay QR.</td></tr>{% endfor %}
</table></body></html>
"""


def _json_body():
    try:
        body = json.loads(request.get_data() or b"{}", parse_float=Decimal)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise Refused("Se esperaba un objeto JSON", 400)
    return body


@bp.errorhandler(Refused)
def refused(error):
    return _error(error.message, error.status)


@bp.errorhandler(FaultError)
def bad_switch(error):
    return _error(str(error), 400)


def _error(message, status):
    return Response(json.dumps({"error": message}), status=status, mimetype="application/json")


@bp.post("/simulator/accounts")
def register():
    body = _json_body()
    fields = {}
    for name in ("userName", "password", "aesKey", "accountNumber"):
        value = body.get(name)
        if not isinstance(value, str) or not value:
            raise Refused(f"{name} es obligatorio", 400)
        fields[name] = value
    if len(fields["aesKey"]) != 32 or not fields["aesKey"].isascii():
        raise Refused("aesKey debe tener 32 caracteres ASCII", 400)
    for name in ("notifyUrl", "notifyBearer"):
        if body.get(name) is not None and not isinstance(body.get(name), str):
            raise Refused(f"{name} debe ser texto", 400)
    bank().ledger.register(
        fields["userName"],
        fields["password"],
        fields["aesKey"],
        fields["accountNumber"],
        body.get("notifyUrl"),
        body.get("notifyBearer"),
    )
    return Response(
        json.dumps({"userName": fields["userName"]}), status=201, mimetype="application/json"
    )


@bp.post("/simulator/pay")
def pay():
    """Pay a QR, then notify the merchant in the background; the answer is the PaymentQR."""
    body = _json_body()
    qr_id = body.get("qrId")
    if not isinstance(qr_id, str):
        raise Refused("qrId es obligatorio", 400)
    payment = _pay(qr_id, body)
    return exact_json(payment)


@bp.post("/pay/<qr_id>")
def pay_from_page(qr_id):
    """The page's «Pagar» button."""
    try:
        _pay(qr_id, {})
        message = f"QR {qr_id} pagado; se está avisando al comercio."
    except Refused as refusal:
        message = f"QR {qr_id}: {refusal.message}"
    return redirect(url_for("control.page", message=message), code=303)


def _pay(qr_id, body, notify=True):
    sim = bank()
    payment = sim.ledger.pay(
        qr_id,
        amount=_amount(body.get("amount")),
        sender=_sender(body),
        moment=_moment(body),
    )
    if notify:
        qr = sim.ledger.qr(qr_id)
        sim.notifier.notify(sim.ledger.account(qr["user_name"]) or {}, payment)
    return payment


def _sender(body):
    """Who pays, where the test or the person says (texts of up to 100 characters)."""
    sender = {}
    for name in ("senderName", "senderBankCode", "senderAccount"):
        if name in body:
            if not isinstance(body[name], str) or not 0 < len(body[name]) <= 100:
                raise Refused(f"{name} debe ser un texto de 1 a 100 caracteres", 400)
            sender[name] = body[name]
    return sender


def _amount(value):
    """None (the QR's own amount), or a positive amount with at most two decimals."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise Refused("amount debe ser un número", 400)
    amount = Decimal(value)
    if amount <= 0 or not amount.is_finite() or amount != amount.quantize(Decimal("0.01")):
        raise Refused("amount debe ser positivo y tener como máximo dos decimales", 400)
    return amount.quantize(Decimal("0.01"))


def _moment(body):
    """When the payment happens (La Paz): now, or ``paymentDate`` and ``paymentTime``."""
    day, at = body.get("paymentDate"), body.get("paymentTime", "12:00:00")
    if day is None:
        return None
    try:
        return datetime.fromisoformat(f"{day}T{at}").replace(tzinfo=LA_PAZ)
    except (TypeError, ValueError) as exc:
        raise Refused("paymentDate (yyyy-MM-dd) o paymentTime (HH:mm:ss) inválidos", 400) from exc


def exact_json(value):
    """JSON with amounts as exact numbers (``Decimal``), as the bank sends them."""
    return Response(simplejson.dumps(value, use_decimal=True), mimetype="application/json")


@bp.post("/simulator/qr/<qr_id>/status")
def change_status(qr_id):
    """Cancel, pay or set any status code of a QR without notifying the merchant."""
    body = _json_body()
    sim = bank()
    if sim.ledger.qr(qr_id) is None:
        raise Refused("QR no encontrado", 404)
    if body.get("status") == "paid":
        return exact_json(_pay(qr_id, body, notify=False))
    code = STATUS_CODES.get(body.get("status"), body.get("code"))
    if isinstance(code, bool) or not isinstance(code, int):
        raise Refused("status (active, paid, cancelled) o code (entero) es obligatorio", 400)
    sim.ledger.set_status(qr_id, code)
    return answer(qrId=qr_id, statusQrCode=code)


@bp.post("/simulator/faults")
def set_faults():
    bank().faults.set(_json_body())
    return answer()


@bp.delete("/simulator/faults")
def clear_faults():
    sim = bank()
    sim.faults.clear()
    sim.notifier.release_held()
    return answer()


@bp.post("/simulator/settings")
def change_settings():
    sim = bank()
    sim.faults.configure(_json_body())
    return Response(json.dumps(sim.faults.settings), mimetype="application/json")


@bp.get("/simulator/settings")
def settings():
    return Response(json.dumps(bank().faults.settings), mimetype="application/json")


@bp.post("/simulator/reset")
def reset():
    """No switches, the start-up settings, no counted requests nor notification attempts,
    nothing held back by the out-of-order switch."""
    sim = bank()
    sim.faults.reset()
    sim.notifier.discard_held()
    sim.notifier.attempts.clear()
    return answer()


@bp.get("/simulator/requests")
def requests_seen():
    return Response(json.dumps(bank().faults.requests), mimetype="application/json")


@bp.get("/simulator/notifications")
def notifications():
    return Response(json.dumps(list(bank().notifier.attempts)), mimetype="application/json")


@bp.get("/simulator/qrs")
def qrs():
    sim = bank()
    listed = []
    for qr in sim.ledger.qrs():
        listed.append(
            {
                "qrId": qr["qr_id"],
                "userName": qr["user_name"],
                "transactionId": qr["transaction_id"],
                "currency": qr["currency"],
                "amount": Decimal(qr["amount"]),
                "description": qr["description"],
                "dueDate": qr["due_date"],
                "singleUse": bool(qr["single_use"]),
                "modifyAmount": bool(qr["modify_amount"]),
                "branchCode": qr["branch_code"],
                "statusQrCode": qr["status"],
                "payments": sim.ledger.payments_of(qr["qr_id"]),
            }
        )
    return exact_json({"qrs": listed})


@bp.get("/simulator/qr/<qr_id>/image.png")
def image(qr_id):
    qr = bank().ledger.qr(qr_id)
    if qr is None:
        raise Refused("QR no encontrado", 404)
    png = qr_png(qr_id, {"amount": qr["amount"], "currency": qr["currency"]})
    return Response(png, mimetype="image/png")


@bp.get("/")
def page():
    return render_template_string(
        PAGE, qrs=bank().ledger.qrs(), labels=STATUS_LABELS, message=request.args.get("message")
    )
