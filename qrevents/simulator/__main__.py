"""``python -m qrevents.simulator --bind 127.0.0.1:8001 [--state FILE]``: serve the simulated
bank on gevent's WSGI server (patched first, so its notifier threads are greenlets)."""

import warnings

from gevent import monkey

# ``-m`` imports the ``qrevents`` package (and with it ``ssl``, through PyJWT) before this
# line can run. The simulator speaks plain HTTP and makes every lock, thread and socket it
# uses after this point, so the patch reaches all of them; the warning about ssl says nothing
# that applies here, and would only alarm whoever starts it.
warnings.filterwarnings("ignore", category=monkey.MonkeyPatchWarning)
monkey.patch_all()

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402

from gevent.pywsgi import WSGIServer  # noqa: E402

from . import create_app  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m qrevents.simulator", description=__doc__)
    parser.add_argument("--bind", default="127.0.0.1:8001", help="HOST:PORT (default %(default)s)")
    parser.add_argument("--state", default=None, help="SQLite file of its state (default: memory)")
    parser.add_argument("--token-lifetime", type=float, help="seconds a token lives (1800)")
    parser.add_argument("--notify-interval", type=float, help="seconds between attempts (1)")
    parser.add_argument("--notify-attempts", type=int, help="notification attempts (10)")
    args = parser.parse_args(argv)
    host, _, port = args.bind.rpartition(":")
    settings = {
        name: value
        for name, value in (
            ("tokenLifetimeSeconds", args.token_lifetime),
            ("notifyIntervalSeconds", args.notify_interval),
            ("notifyAttempts", args.notify_attempts),
        )
        if value is not None
    }
    app = create_app(args.state, **settings)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    server = WSGIServer((host.strip("[]"), int(port)), app, log=None, error_log=sys.stderr)
    print(
        f"Banco simulado en http://{args.bind}/ (API: http://{args.bind}/ApiGateway/)", flush=True
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
