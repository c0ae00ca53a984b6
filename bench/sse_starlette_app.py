"""The asyncio peer: sse-starlette (PyPI) on uvicorn, as a Starlette user would write it.

One ``asyncio.Queue`` per stream, grouped by channel (account); ``POST /publish?channel=C&type=T``
puts the event into every queue of the channel, and each stream's ``EventSourceResponse``
takes it from its queue and lets sse-starlette encode and send it. Like the limit, a short
in-memory history per channel answers ``Last-Event-ID``, so the reconnect storm has a row here
too. sse-starlette's default separator is CRLF; ``\\n`` is chosen as every other target sends.

Run: ``uvicorn bench.sse_starlette_app:app --loop uvloop --http httptools``.
"""

import asyncio
from collections import defaultdict

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

HISTORY = 1000
SEP = "\n"
CONNECTED = ServerSentEvent(data='{"message":"connected"}', event="connection", retry=5000, sep=SEP)

queues = defaultdict(set)  # channel -> the queues of its open streams
history = defaultdict(list)  # channel -> [(id, event)], oldest first


async def publish(request):
    channel = request.query_params.get("channel", "sse")
    data = (await request.body()).decode()
    past = history[channel]
    event_id = past[-1][0] + 1 if past else 1
    event = ServerSentEvent(
        data=data, event=request.query_params.get("type", "message"), id=str(event_id), sep=SEP
    )
    past.append((event_id, event))
    if len(past) > HISTORY:
        del past[: len(past) - HISTORY]
    for queue in queues[channel]:
        queue.put_nowait(event)
    return PlainTextResponse("ok")


async def stream(request):
    channel = request.query_params.get("channel", "sse")
    last_id = request.headers.get("last-event-id")
    queue = asyncio.Queue()
    # No await between reading the history and joining the channel: nothing falls between.
    missed = [event for event_id, event in history[channel] if last_id and event_id > int(last_id)]
    queues[channel].add(queue)

    async def events():
        try:
            yield CONNECTED
            for event in missed:
                yield event
            while True:
                yield await queue.get()
        finally:
            queues[channel].discard(queue)

    return EventSourceResponse(events(), sep=SEP)


async def probe(request):
    return PlainTextResponse("ok")


app = Starlette(
    routes=[
        Route("/publish", publish, methods=["POST"]),
        Route("/stream", stream),
        Route("/probe", probe),
    ]
)
