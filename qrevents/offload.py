"""CPU-heavy calls (password hashing) off the gevent loop, so streams keep flowing."""

from gevent import get_hub, monkey


def off_loop(function, *args):
    """Run ``function`` in gevent's thread pool when serving under gevent, inline otherwise.

    scrypt releases the GIL, so a login does not freeze every stream of the worker.
    """
    if monkey.is_module_patched("threading"):
        return get_hub().threadpool.apply(function, args)
    return function(*args)
