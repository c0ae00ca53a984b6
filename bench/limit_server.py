"""The limit: the least an SSE server on gevent can do, to measure qrevents against.

No Flask, no database, no auth. ``GET /stream?channel=C`` holds a socket (its greenlet parks
on ``recv`` to notice the close); ``POST /publish?channel=C&type=T`` frames the body once,
chunk-encodes it once and writes the same bytes to every socket of the channel. A short
in-memory history answers ``Last-Event-ID`` so the reconnect storm has a limit row too.
Responses are chunked HTTP/1.1, as gunicorn sends them, so every client parses the same thing.

Run: ``python -m bench.limit_server --port 8100``.
"""

import argparse
from collections import defaultdict
from urllib.parse import parse_qs, urlsplit

from gevent import monkey

monkey.patch_all()

from gevent.server import StreamServer  # noqa: E402

HISTORY = 20000
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
CONNECTED = b'retry: 5000\n\nevent: connection\ndata: {"message":"connected"}\n\n'


def chunk(payload):
    return b"%X\r\n%s\r\n" % (len(payload), payload)


class Channels:
    """Open sockets and recent frames per channel; ids are a per-channel counter."""

    def __init__(self):
        self.sockets = defaultdict(set)
        self.history = defaultdict(list)  # [(id, chunk)], oldest first

    def publish(self, channel, event_type, data):
        history = self.history[channel]
        event_id = history[-1][0] + 1 if history else 1
        frame = chunk(b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, event_type, data))
        history.append((event_id, frame))
        if len(history) > HISTORY:
            del history[: len(history) - HISTORY]
        for sock in list(self.sockets[channel]):
            try:
                sock.sendall(frame)
            except OSError:
                self.sockets[channel].discard(sock)

    def subscribe(self, channel, sock, last_id):
        """Replay what follows ``last_id``, then join the live set with no gap between."""
        history = self.history[channel]
        if last_id is not None:
            sent = last_id
            while history and history[-1][0] > sent:
                missed = [frame for event_id, frame in history if event_id > sent]
                sent = history[-1][0]
                sock.sendall(b"".join(missed))  # may yield: loop for what arrived meanwhile
        self.sockets[channel].add(sock)


def read_request(sock, buffered=b""):
    """(method, path, headers, body, rest) of one request, or None when the peer left."""
    data = buffered
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            return None
        data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", 0))
    while len(rest) < length:
        more = sock.recv(65536)
        if not more:
            return None
        rest += more
    return method, target, headers, rest[:length], rest[length:]


def make_handler(channels):
    def handle(sock, _address):
        buffered = b""
        while True:
            request = read_request(sock, buffered)
            if request is None:
                return
            method, target, headers, body, buffered = request
            url = urlsplit(target)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            channel = query.get("channel", "sse")
            if method == "POST" and url.path == "/publish":
                channels.publish(channel, query.get("type", "message").encode(), body)
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            elif url.path == "/stream":
                last_id = headers.get("last-event-id")
                sock.sendall(STREAM_HEAD + chunk(CONNECTED))
                channels.subscribe(channel, sock, int(last_id) if last_id else None)
                try:
                    while sock.recv(4096):
                        pass
                except OSError:
                    pass
                channels.sockets[channel].discard(sock)
                return
            else:
                sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    return handle


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = StreamServer((args.host, args.port), make_handler(Channels()), backlog=4096)
    server.serve_forever()


if __name__ == "__main__":
    main()
