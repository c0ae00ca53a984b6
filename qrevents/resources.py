"""How rows look in the REST API's ``data``: camelCase, exact amounts, ISO times."""

import json

from . import events
from .clock import iso
from .money import from_cents


def account_json(account):
    return {
        "id": account.id,
        "name": account.name,
        "currency": account.currency,
        "balance": from_cents(account.balance_cents),
        "availableBalance": from_cents(account.available_cents),
    }


def user_json(user):
    return {"id": user.id, "email": user.email, "name": user.name, "accountId": user.account_id}


def api_key_json(key, plaintext=None):
    body = {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "createdAt": iso(key.created_at),
        "expiresAt": iso(key.expires_at),
        "revokedAt": iso(key.revoked_at),
    }
    if plaintext is not None:
        body["key"] = plaintext
    return body


def qr_json(qr):
    """The ``qr_created`` event's data, plus when it was created."""
    _, _, data = events.qr_created(qr)
    return {**data, "createdAt": iso(qr.created_at)}


def bank_link_json(link):
    """An account's bank link as the operator sees it: never a secret."""
    return {
        "accountId": link.account_id,
        "adapter": link.adapter,
        "baseUrl": link.base_url,
        "userName": link.user_name,
        "branchCode": link.branch_code,
        "createdAt": iso(link.created_at),
        "updatedAt": iso(link.updated_at),
    }


def payment_json(payment):
    return {
        "transactionId": payment.transaction_id,
        "qrId": payment.qr.qr_id,
        "amount": from_cents(payment.amount_cents),
        "currency": payment.currency,
        "senderName": payment.sender_name,
        "senderDocumentId": payment.sender_document_id,
        "senderAccount": payment.sender_account,
        "senderBankCode": payment.sender_bank_code,
        "description": payment.description,
        "paymentDate": iso(payment.payment_date),
        "paymentTime": payment.payment_time,
        "review": payment.review,
        "reviewReason": payment.review_reason,
        "releasedAt": iso(payment.released_at),
        "createdAt": iso(payment.created_at),
    }


def movement_json(movement):
    return {
        "seq": movement.seq,
        "movementType": movement.movement_type,
        "amount": from_cents(movement.amount_cents),
        "balance": from_cents(movement.balance_after_cents),
        "availableBalance": from_cents(movement.available_after_cents),
        "description": movement.description,
        "qrId": movement.qr_id,
        "transactionId": movement.transaction_id,
        "createdAt": iso(movement.created_at),
    }


def page_json(rows, present, limit, cursor_of):
    """``{items, nextCursor}``; a full page means there may be more."""
    next_cursor = str(cursor_of(rows[-1])) if len(rows) == limit else None
    return {"items": [present(row) for row in rows], "nextCursor": next_cursor}


def webhook_json(endpoint, secret=None):
    """An endpoint as its users see it; ``secret`` only in the registration response."""
    body = {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "events": json.loads(endpoint.events) if endpoint.events else None,
        "enabled": endpoint.enabled,
        "disabledReason": endpoint.disabled_reason,
        "disabledAt": iso(endpoint.disabled_at),
        "lastError": endpoint.last_error,
        "failedAttempts": endpoint.attempts,
        "nextAttemptAt": iso(endpoint.next_attempt_at),
        "createdAt": iso(endpoint.created_at),
    }
    if secret is not None:
        body["secret"] = secret
    return body


def webhook_delivery_json(delivery):
    return {
        "deliveryId": delivery.delivery_id,
        "eventId": delivery.event_id,
        "eventSeq": delivery.event_seq,
        "attempt": delivery.attempt,
        "statusCode": delivery.status_code,
        "latencyMs": delivery.latency_ms,
        "error": delivery.error,
        "succeeded": delivery.succeeded,
        "createdAt": iso(delivery.created_at),
    }
