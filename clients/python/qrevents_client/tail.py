"""``qrevents-tail``: an account's events as JSON lines, for ``jq``, log shippers and checks.

With ``--state FILE`` it resumes where the last run stopped: the file holds the id of the last
durable event printed, replaced atomically after each one.
"""

import argparse
import logging
import os
import sys
import tempfile

from .client import QrEventsClient
from .errors import AuthError, QrEventsError
from .money import dumps


def main(argv=None):
    args = _arguments(argv)
    # Reconnections are worth an operator's eye; stdout stays pure JSON lines.
    logging.basicConfig(level=logging.WARNING, format="qrevents-tail: %(message)s")
    client = QrEventsClient(args.url, api_key=args.api_key, token=args.token)
    stream = client.events(
        last_event_id=_read_state(args.state) if args.state else None,
        on_id=(lambda event_id: _write_state(args.state, event_id)) if args.state else None,
        heartbeats=args.heartbeats,
    )
    try:
        for event in stream:
            line = {"type": event.type, "id": event.id, "data": event.data}
            print(dumps(line, ascii_only=False), flush=True)
    except AuthError as exc:
        print(f"qrevents-tail: credentials refused: {exc}", file=sys.stderr)
        return 2
    except QrEventsError as exc:
        print(f"qrevents-tail: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader (`head`, a closed pipe) has had enough
        sys.stdout = None
        return 0
    finally:
        stream.close()


def _arguments(argv):
    parser = argparse.ArgumentParser(
        prog="qrevents-tail", description="Print a qrevents account's events as JSON lines."
    )
    parser.add_argument("--url", required=True, help="the server, e.g. https://qr.example.com")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--api-key", help="an API key (default: $QREVENTS_API_KEY)")
    who.add_argument("--token", help="a JWT instead of an API key")
    parser.add_argument("--state", help="file holding the last event id: resume from it")
    parser.add_argument("--heartbeats", action="store_true", help="print heartbeats too")
    args = parser.parse_args(argv)
    if not args.token:
        args.api_key = args.api_key or os.environ.get("QREVENTS_API_KEY")
    if not (args.api_key or args.token):
        parser.error("--api-key (or QREVENTS_API_KEY) or --token is required")
    return args


def _read_state(path):
    try:
        with open(path, encoding="utf-8") as state:
            return state.read().strip() or None
    except FileNotFoundError:
        return None


def _write_state(path, event_id):
    """Replace the file in one step: a crash leaves the old id or the new, never half."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=".qrevents-tail-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as state:
            state.write(event_id + "\n")
            state.flush()
            os.fsync(state.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


if __name__ == "__main__":
    sys.exit(main())
