"""The SSE wire format: how an event becomes the bytes of a frame.

What each event carries is declared in ``events.py``; this module only frames it. Every
frame, live or replayed, durable or not, is made by ``encode_frame``.
"""

import random
import string
import time

from .exact_json import dumps

_ALPHABET = string.ascii_lowercase + string.digits
# Where str.splitlines() breaks a line besides CR and LF (requests' iter_lines with
# decode_unicode uses it). JSON keeps U+0085, U+2028 and U+2029 raw in strings with
# ensure_ascii=False; a Python SSE client would then read a forged field there. They
# can only occur inside JSON strings, where \uXXXX means the same character.
_LINE_BREAKERS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_ESCAPED = {ord(ch): f"\\u{ord(ch):04x}" for ch in _LINE_BREAKERS}


def encode_frame(event_type, data_json, event_id=None):
    """One SSE frame; ``data_json`` is already JSON (no raw CR or LF by construction).

    Every frame, live or replayed from the log, is made here, so this is where the line
    breaks JSON leaves raw are escaped: events logged before (or by another writer) are
    made safe on their way out too, and the log keeps the text as it was.
    """
    data_json = _escape_line_breaks(data_json)
    head = f"id: {event_id}\nevent: {event_type}\n" if event_id else f"event: {event_type}\n"
    return f"{head}data: {data_json}\n\n".encode()


def frame(event):
    """The frame of an event built now, as ``(type, id or None, data)`` (``events.py``)."""
    event_type, event_id, data = event
    return encode_frame(event_type, dumps(data), event_id)


def _escape_line_breaks(json_text):
    """``json_text`` with every line breaker as ``\\uXXXX``; mostly there is none to find
    (eight ``in`` tests: about 1 µs a frame, a regex scan took 6.7 µs)."""
    for ch in _LINE_BREAKERS:
        if ch in json_text:
            return json_text.translate(_ESCAPED)
    return json_text


def retry_frame(retry_ms):
    """The reconnection delay a client should use."""
    return f"retry: {int(retry_ms)}\n\n".encode()


def jittered_retry_frame(low_ms, high_ms):
    """A reconnection delay drawn in ``[low_ms, high_ms]``: clients a restart or a limit sent
    away together do not all come back in the same instant."""
    return retry_frame(random.randint(low_ms, high_ms))


def new_connection_id():
    """``conn_<ms>_<6 random chars>``: it names a connection in logs, it guards nothing."""
    value, suffix = random.randrange(36**6), []
    for _ in range(6):
        value, digit = divmod(value, 36)
        suffix.append(_ALPHABET[digit])
    return f"conn_{int(time.time() * 1000)}_{''.join(suffix)}"
