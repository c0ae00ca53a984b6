"""The ``text/event-stream`` format, parsed exactly as the WHATWG HTML standard says.

Lines end at CRLF, LF or CR and nowhere else: ``str.splitlines`` would also split on U+2028,
U+0085 and friends, which JSON may carry raw, and hand the reader an injected field. A UTF-8
byte order mark is dropped once at the start of a stream; ``data`` lines are joined with LF;
comments (``:`` lines) are ignored; an event cut off by the end of the stream is discarded.
"""

import codecs
import re
from dataclasses import dataclass

LINE_END = re.compile(r"\r\n|\r|\n")
MAX_LINE = 1 << 20  # a line this long is not from qrevents: refuse rather than grow


class SseProtocolError(Exception):
    """The bytes cannot be an event stream (a line longer than ``MAX_LINE``)."""


@dataclass(frozen=True)
class Frame:
    """One dispatched event before its data is interpreted. ``id`` is this frame's own
    ``id:`` field (None when it had none); ``last_event_id`` is the stream's buffer."""

    type: str
    data: str
    id: str | None
    last_event_id: str


class SseParser:
    """Feed bytes of one connection as they arrive; get the events they complete."""

    def __init__(self, last_event_id=""):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = False
        self._after_cr = False
        self._pending = ""
        self._type = ""
        self._data = []
        self._frame_id = None
        self.last_event_id = last_event_id
        self.retry_ms = None

    def feed(self, chunk):
        """The frames completed by ``chunk`` (bytes), in order."""
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._after_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF split across two chunks
        buffer, frames, start = self._pending + text, [], 0
        for match in LINE_END.finditer(buffer):
            self._line(buffer[start : match.start()], frames)
            start = match.end()
        self._pending = buffer[start:]
        self._after_cr = start == len(buffer) and buffer.endswith("\r")
        if len(self._pending) > MAX_LINE:
            raise SseProtocolError(f"a line longer than {MAX_LINE} characters")
        return frames

    def _line(self, line, frames):
        if not line:
            self._dispatch(frames)
            return
        if line.startswith(":"):
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = self._frame_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry_ms = int(value)

    def _dispatch(self, frames):
        frame_id, self._frame_id = self._frame_id, None
        event_type, self._type = self._type or "message", ""
        data, self._data = self._data, []
        if data:
            frames.append(Frame(event_type, "\n".join(data), frame_id or None, self.last_event_id))
