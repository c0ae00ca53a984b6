"""The limit: the least an SSE server on gevent can do, to measure qrevents against.

No Flask, no database, no auth, and the fastest delivery gevent allows, qrevents' own included:
``POST /publish?channel=C&type=T`` frames the body once, chunk-encodes it once, and the
publishing greenlet writes that chunk to each stream's raw non-blocking socket with one
``send``, looping over the channel's bound ``send`` methods: no greenlet is woken per delivery.
A stream whose socket does not take the whole chunk (a slow reader) leaves the rest to a
writer greenlet of its own until it has caught up. ``GET /stream?channel=C`` writes the head
and the connection event, replays what follows ``Last-Event-ID`` from a short in-memory
history, joins the channel, and its greenlet parks on ``recv`` to notice the close: one
greenlet per connection, as gunicorn's gevent worker has. Requests are parsed as bytes with
no URL or header library. Responses are chunked HTTP/1.1, as gunicorn sends them, so every
client parses the same thing.

Run: ``python -m bench.limit_server --port 8100``.
"""

import argparse

import gevent
from gevent.server import StreamServer

HISTORY = 1000
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
CONNECTED = b'retry: 5000\n\nevent: connection\ndata: {"message":"connected"}\n\n'
PUBLISHED = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


def chunk(payload):
    return b"%X\r\n%s\r\n" % (len(payload), payload)


class Stream:
    """One open stream: its socket, and what its writer greenlet still has to send."""

    __slots__ = ("sock", "send", "backlog", "closed")

    def __init__(self, sock):
        self.sock = sock
        self.send = sock._sock.send  # the raw non-blocking socket's: never yields
        self.backlog = []
        self.closed = False


class Channel:
    """Streams written to directly (keyed by their bound ``send``), the lagging ones, and
    the recent chunks; ids are a per-channel counter."""

    __slots__ = ("direct", "lagging", "history", "last_id")

    def __init__(self):
        self.direct = {}
        self.lagging = set()
        self.history = []  # [(id, chunk)], oldest first
        self.last_id = 0

    def publish(self, event_type, data):
        self.last_id += 1
        frame = chunk(b"id: %d\nevent: %s\ndata: %s\n\n" % (self.last_id, event_type, data))
        self.history.append((self.last_id, frame))
        if len(self.history) > HISTORY:
            del self.history[: len(self.history) - HISTORY]
        size = len(frame)
        short = None
        for send in self.direct:
            try:
                sent = send(frame)
            except BlockingIOError:
                sent = 0
            except OSError:
                sent = -1
            if sent != size:
                if short is None:
                    short = []
                short.append((send, sent))
        for stream in self.lagging:
            stream.backlog.append(frame)
        if short:
            for send, sent in short:
                stream = self.direct.pop(send)
                if sent >= 0:  # the kernel's buffer is full: the rest is the writer's
                    stream.backlog.append(frame[sent:])
                    self.lagging.add(stream)
                    gevent.spawn(self.catch_up, stream)

    def catch_up(self, stream):
        """Write a slow reader's backlog cooperatively, then hand it back to the publisher."""
        try:
            while stream.backlog and not stream.closed:
                pending = b"".join(stream.backlog)
                stream.backlog.clear()
                stream.sock.sendall(pending)
        except OSError:
            stream.closed = True
        self.lagging.discard(stream)
        if not stream.closed:
            self.direct[stream.send] = stream

    def subscribe(self, stream, last_id):
        """Replay what follows ``last_id``, then join the channel with no gap between."""
        if last_id is not None:
            sent = last_id
            while self.history and self.history[-1][0] > sent:
                missed = [frame for event_id, frame in self.history if event_id > sent]
                sent = self.history[-1][0]
                stream.sock.sendall(b"".join(missed))  # may yield: loop for what came meanwhile
        self.direct[stream.send] = stream

    def leave(self, stream):
        stream.closed = True
        self.direct.pop(stream.send, None)
        self.lagging.discard(stream)


def read_request(sock, buffered):
    """(method, path, query, head, body, rest) of one request, or None when the peer left."""
    data = buffered
    while (end := data.find(b"\r\n\r\n")) < 0:
        more = sock.recv(65536)
        if not more:
            return None
        data += more
    head, rest = data[:end], data[end + 4 :]
    method, target, _ = head[: head.find(b"\r\n")].split(b" ", 2)
    path, _, query = target.partition(b"?")
    lower = head.lower()
    length = int(header(lower, b"content-length") or 0)
    while len(rest) < length:
        more = sock.recv(65536)
        if not more:
            return None
        rest += more
    return method, path, query, lower, rest[:length], rest[length:]


def param(query, name, default):
    for pair in query.split(b"&"):
        key, _, value = pair.partition(b"=")
        if key == name:
            return value
    return default


def header(lower_head, name):
    at = lower_head.find(b"\r\n" + name + b":")
    if at < 0:
        return None
    start = at + len(name) + 3
    end = lower_head.find(b"\r\n", start)
    return lower_head[start : end if end >= 0 else None].strip()


def make_handler(channels):
    def channel_of(query):
        name = param(query, b"channel", b"sse")
        channel = channels.get(name)
        if channel is None:
            channel = channels[name] = Channel()
        return channel

    def handle(sock, _address):
        buffered = b""
        while True:
            request = read_request(sock, buffered)
            if request is None:
                return
            method, path, query, head, body, buffered = request
            if method == b"POST" and path == b"/publish":
                channel_of(query).publish(param(query, b"type", b"message"), body)
                sock.sendall(PUBLISHED)
            elif path == b"/stream":
                channel = channel_of(query)
                last_id = header(head, b"last-event-id")
                stream = Stream(sock)
                sock.sendall(STREAM_HEAD + chunk(CONNECTED))
                channel.subscribe(stream, int(last_id) if last_id else None)
                try:
                    while sock.recv(4096):
                        pass
                except OSError:
                    pass
                channel.leave(stream)
                return
            else:
                sock.sendall(NOT_FOUND)

    return handle


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = StreamServer((args.host, args.port), make_handler({}), backlog=4096)
    server.serve_forever()


if __name__ == "__main__":
    main()
