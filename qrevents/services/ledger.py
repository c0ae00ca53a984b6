"""The account ledger: every balance change is a movement with its own sequence number."""

from models import Movement
from models.statements import insert

from .. import events
from ..clock import utcnow

# movement type -> (moves balance, moves available balance)
MOVEMENT_EFFECTS = {
    "qr_payment": (True, True),
    "qr_payment_held": (True, False),  # money arrived, held for review
    "review_release": (False, True),  # the held money becomes available
}


def post_movement(change, movement_type, amount_cents, *, description, qr_id, transaction_id):
    """Apply a movement to the locked account and record its ``account_balance_update``."""
    account = change.account
    moves_balance, moves_available = MOVEMENT_EFFECTS[movement_type]
    previous_balance, previous_available = account.balance_cents, account.available_cents
    if moves_balance:
        account.balance_cents += amount_cents
    if moves_available:
        account.available_cents += amount_cents
    account.movement_seq += 1
    movement = Movement(
        account=account.id,
        seq=account.movement_seq,
        movement_type=movement_type,
        amount_cents=amount_cents,
        balance_after_cents=account.balance_cents,
        available_after_cents=account.available_cents,
        description=description,
        qr_id=qr_id,
        transaction_id=transaction_id,
        created_at=utcnow(),
    )
    insert(movement)
    change.record(
        events.account_balance_update(account, movement, previous_balance, previous_available)
    )
    return movement


def list_movements(account_id, *, limit, cursor):
    """Newest first; ``cursor`` is the last movement sequence number of the previous page."""
    query = Movement.select().where(Movement.account == account_id)
    if cursor:
        query = query.where(Movement.seq < cursor)
    return list(query.order_by(Movement.seq.desc()).limit(limit))
