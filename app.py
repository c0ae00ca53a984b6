"""The WSGI entry point: ``gunicorn app:app`` (gunicorn.conf.py sets the gevent worker)."""

from qrevents import create_app

app = create_app()
