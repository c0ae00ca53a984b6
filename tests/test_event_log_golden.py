"""Golden event data: the log's rows and the Redis messages, as text, for every durable type.

Times that say when a row was written (the milliseconds in a status change's and a balance
update's id) are the only values normalised; everything else is fixed by the test.
"""

import json
import re
from datetime import datetime

import pytest

from models import Event
from qrevents.banks import IssuedQr
from qrevents.redis_broker import (
    decode_events_message,
    encode_events_message,
    encode_legacy_events_message,
)
from qrevents.services import payments, qrs
from qrevents.services.accounts import create_account
from qrevents.services.eventlog import events_between
from qrevents.services.payments import PaymentNotice
from qrevents.signals import events_committed

QR_ID = "26113012345678901234"
DUE = datetime(2031, 1, 2, 3, 4, 5, 678000)

LOG_ROWS = [
    (
        1,
        "qr_created",
        f"qr_created_{QR_ID}",
        '{"qrId":"26113012345678901234","transactionId":"GOLDEN_QR_1","amount":100.50,'
        '"currency":"BOB","description":"Pago de café\u2028línea","dueDate":'
        '"2031-01-02T03:04:05.678Z","singleUse":true,"modifyAmount":false,"status":"active"}',
    ),
    (
        2,
        "qr_payment",
        "qr_payment_GOLDEN_PAY_1",
        '{"qrId":"26113012345678901234","transactionId":"GOLDEN_PAY_1","amount":100.50,'
        '"currency":"BOB","senderName":"Juan Pérez\u2029","senderDocumentId":"12345678",'
        '"senderAccount":"1234567890","senderBankCode":"BANECO","description":"Pago",'
        '"paymentDate":"2026-01-15T10:30:00.000Z","paymentTime":"10:30:00","singleUse":true,'
        '"newStatus":"used","review":false,"reviewReason":null}',
    ),
    (
        3,
        "account_balance_update",
        "balance_update_<ms>_1",
        '{"accountId":<account>,"movementType":"qr_payment","amount":100.50,'
        '"previousBalance":0.00,"newBalance":100.50,"previousAvailableBalance":0.00,'
        '"newAvailableBalance":100.50,"description":"Pago QR recibido",'
        '"qrId":"26113012345678901234","transactionId":"GOLDEN_PAY_1","currency":"BOB"}',
    ),
    (
        4,
        "qr_status_change",
        f"qr_status_change_{QR_ID}_<ms>",
        '{"qrId":"26113012345678901234","previousStatus":"active","newStatus":"used",'
        '"amount":100.50,"currency":"BOB","description":"Pago de café\u2028línea",'
        '"singleUse":true,"dueDate":"2031-01-02T03:04:05.678Z","syncSource":"payment"}',
    ),
]

# The pub/sub message of the payment's three events (version 2): their data, no SSE text.
V2_PAYMENT_MESSAGE = (
    '{"v":2,"a":<account>,"e":[[2,"qr_payment","qr_payment_GOLDEN_PAY_1","{\\"qrId\\":'
    '\\"26113012345678901234\\",\\"transactionId\\":\\"GOLDEN_PAY_1\\",\\"amount\\":100.50,'
    '\\"currency\\":\\"BOB\\",\\"senderName\\":\\"Juan P\\u00e9rez\\u2029\\",'
    '\\"senderDocumentId\\":\\"12345678\\",\\"senderAccount\\":\\"1234567890\\",'
    '\\"senderBankCode\\":\\"BANECO\\",\\"description\\":\\"Pago\\",\\"paymentDate\\":'
    '\\"2026-01-15T10:30:00.000Z\\",\\"paymentTime\\":\\"10:30:00\\",\\"singleUse\\":true,'
    '\\"newStatus\\":\\"used\\",\\"review\\":false,\\"reviewReason\\":null}"],'
    '[3,"account_balance_update","balance_update_<ms>_1","{\\"accountId\\":<account>,'
    '\\"movementType\\":\\"qr_payment\\",\\"amount\\":100.50,\\"previousBalance\\":0.00,'
    '\\"newBalance\\":100.50,\\"previousAvailableBalance\\":0.00,\\"newAvailableBalance\\":100.50,'
    '\\"description\\":\\"Pago QR recibido\\",\\"qrId\\":\\"26113012345678901234\\",'
    '\\"transactionId\\":\\"GOLDEN_PAY_1\\",\\"currency\\":\\"BOB\\"}"],'
    '[4,"qr_status_change","qr_status_change_26113012345678901234_<ms>","{\\"qrId\\":'
    '\\"26113012345678901234\\",\\"previousStatus\\":\\"active\\",\\"newStatus\\":\\"used\\",'
    '\\"amount\\":100.50,\\"currency\\":\\"BOB\\",\\"description\\":'
    '\\"Pago de caf\\u00e9\\u2028l\\u00ednea\\",\\"singleUse\\":true,\\"dueDate\\":'
    '\\"2031-01-02T03:04:05.678Z\\",\\"syncSource\\":\\"payment\\"}"]]}'
)

# The same message as workers before version 2 wrote it (each event's SSE frame as text),
# pinned on that code; a new worker must still read it, into the same frames.
V1_PAYMENT_MESSAGE = (
    '{"a": <account>, "e": [[2, "id: qr_payment_GOLDEN_PAY_1\\nevent: qr_payment\\ndata: '
    '{\\"qrId\\":\\"26113012345678901234\\",\\"transactionId\\":\\"GOLDEN_PAY_1\\",'
    '\\"amount\\":100.50,\\"currency\\":\\"BOB\\",\\"senderName\\":\\"Juan P\\u00e9rez\\\\u2029\\",'
    '\\"senderDocumentId\\":\\"12345678\\",\\"senderAccount\\":\\"1234567890\\",'
    '\\"senderBankCode\\":\\"BANECO\\",\\"description\\":\\"Pago\\",\\"paymentDate\\":'
    '\\"2026-01-15T10:30:00.000Z\\",\\"paymentTime\\":\\"10:30:00\\",\\"singleUse\\":true,'
    '\\"newStatus\\":\\"used\\",\\"review\\":false,\\"reviewReason\\":null}\\n\\n"], '
    '[3, "id: balance_update_<ms>_1\\nevent: account_balance_update\\ndata: '
    '{\\"accountId\\":<account>,\\"movementType\\":\\"qr_payment\\",\\"amount\\":100.50,'
    '\\"previousBalance\\":0.00,\\"newBalance\\":100.50,\\"previousAvailableBalance\\":0.00,'
    '\\"newAvailableBalance\\":100.50,\\"description\\":\\"Pago QR recibido\\",'
    '\\"qrId\\":\\"26113012345678901234\\",\\"transactionId\\":\\"GOLDEN_PAY_1\\",'
    '\\"currency\\":\\"BOB\\"}\\n\\n"], '
    '[4, "id: qr_status_change_26113012345678901234_<ms>\\nevent: qr_status_change\\ndata: '
    '{\\"qrId\\":\\"26113012345678901234\\",\\"previousStatus\\":\\"active\\",'
    '\\"newStatus\\":\\"used\\",\\"amount\\":100.50,\\"currency\\":\\"BOB\\",'
    '\\"description\\":\\"Pago de caf\\u00e9\\\\u2028l\\u00ednea\\",\\"singleUse\\":true,'
    '\\"dueDate\\":\\"2031-01-02T03:04:05.678Z\\",\\"syncSource\\":\\"payment\\"}\\n\\n"]]}'
)


def normalised(text, account_id):
    text = re.sub(r"(qr_status_change_\d{20})_\d{13}", r"\1_<ms>", text)
    text = re.sub(r"balance_update_\d{13}_", "balance_update_<ms>_", text)
    for value, name in (
        (f'"accountId":{account_id},', '"accountId":<account>,'),
        (f'\\"accountId\\":{account_id},', '\\"accountId\\":<account>,'),
        (f'{{"a": {account_id}, ', '{"a": <account>, '),
        (f'{{"v":2,"a":{account_id},', '{"v":2,"a":<account>,'),
    ):
        text = text.replace(value, name)
    return text


def record_every_durable_event(app):
    """A QR created and paid: ``(account_id, announced events per commit)``."""
    announced = []

    def receiver(sender, account_id, events):
        announced.append(list(events))

    events_committed.connect(receiver, sender=app)
    try:
        account = create_account("Comercio", "BOB")
        request = qrs.QrRequest(
            amount_cents=10050,
            currency="BOB",
            description="Pago de café\u2028línea",
            due_date=DUE,
            single_use=True,
            modify_amount=False,
            transaction_id="GOLDEN_QR_1",
        )
        plan = qrs.plan_qr(account.id, request)
        qrs.record_issued(account.id, request, plan, IssuedQr(qr_id=QR_ID, image_png=b""))
        notice = PaymentNotice(
            qr_id=QR_ID,
            transaction_id="GOLDEN_PAY_1",
            amount_cents=10050,
            currency="BOB",
            sender_name="Juan Pérez\u2029",
            sender_document_id="12345678",
            sender_account="1234567890",
            sender_bank_code="BANECO",
            description="Pago",
            payment_date=datetime(2026, 1, 15, 10, 30),
            payment_time="10:30:00",
        )
        payments.post_payment(notice)
    finally:
        events_committed.disconnect(receiver, sender=app)
    return account.id, announced


def test_the_log_keeps_each_durable_events_data_as_this_json_text(app):
    account_id, _ = record_every_durable_event(app)
    rows = Event.select(Event.seq, Event.event_type, Event.event_id, Event.data).where(
        Event.account == account_id
    )
    logged = [
        (seq, event_type, normalised(event_id, account_id), normalised(data, account_id))
        for seq, event_type, event_id, data in rows.order_by(Event.seq).tuples()
    ]
    assert logged == LOG_ROWS


def test_the_redis_message_of_a_payment_is_this_text(app):
    account_id, announced = record_every_durable_event(app)
    message = encode_events_message(account_id, announced[1])
    assert normalised(message, account_id) == V2_PAYMENT_MESSAGE


def as_sent(golden_text, account_id, events):
    """A golden message with this run's account id and event ids put back."""
    text = golden_text.replace("<account>", str(account_id))
    for event in events:
        text = text.replace(normalised(event.event_id, account_id), event.event_id)
    return text


def test_a_message_decodes_to_the_records_that_were_announced(app):
    account_id, announced = record_every_durable_event(app)
    decoded_account, events = decode_events_message(encode_events_message(account_id, announced[1]))
    assert decoded_account == account_id
    assert [(e.seq, e.event_type, e.event_id, e.data, e.frame) for e in events] == [
        (e.seq, e.event_type, e.event_id, e.data, e.frame) for e in announced[1]
    ]


def test_old_workers_get_the_very_v1_message_they_sent_themselves(app):
    """A rolling reload mixes workers: the message a new worker sends old ones on their
    single channel is, byte for byte, the one they published before (pinned on the old code),
    and its frames are those of the new format and of replay from the log."""
    account_id, announced = record_every_durable_event(app)
    legacy = encode_legacy_events_message(account_id, announced[1])
    assert legacy == as_sent(V1_PAYMENT_MESSAGE, account_id, announced[1])
    _, new_events = decode_events_message(as_sent(V2_PAYMENT_MESSAGE, account_id, announced[1]))
    replayed = events_between(account_id, 1, 4)
    frames = [frame for _, frame in json.loads(legacy)["e"]]
    assert frames == [e.frame.decode() for e in new_events] == [e.frame.decode() for e in replayed]


@pytest.mark.parametrize(
    "message",
    [
        b"[]",
        b'{"v":3,"a":1,"e":[]}',
        b'{"a":1,"e":[[1,"no frame here"]]}',
        b'{"v":2,"a":1,"e":[[1,"qr_created"]]}',
        b"not json",
    ],
)
def test_a_malformed_message_is_refused_with_the_errors_the_listener_ignores(message):
    with pytest.raises((ValueError, KeyError, TypeError)):
        decode_events_message(message)
