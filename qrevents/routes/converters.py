"""URL converters of our routes."""

from werkzeug.routing import BaseConverter

from ..errors import InvalidPathId
from ..events import SAFE_ID

# What a refused id is said to be, by the field that names it in the 422.
ID_KINDS = {"qrId": "no es un id de QR", "transactionId": "no es un id de transacción"}


class SafeIdConverter(BaseConverter):
    """``<safe_id("qrId"):qr_id>``: an id that may be written as it is into a frame, a log
    line or a query (``events.SAFE_ID``). Anything else between the slashes is a 422 naming the
    field, answered before any hook or view runs (no credential is read for it)."""

    regex = "[^/]+"
    part_isolating = True

    def __init__(self, url_map, field):
        super().__init__(url_map)
        self.field = field
        self.refusal = ID_KINDS[field]

    def to_python(self, value):
        if not SAFE_ID.match(value):
            raise InvalidPathId(self.field, self.refusal)
        return value


CONVERTERS = {"safe_id": SafeIdConverter}
