"""gunicorn settings for the flask-sse peer (the repo's gunicorn.conf.py is qrevents' own)."""

worker_class = "gevent"
workers = 1
# Each flask-sse stream holds its socket and a Redis connection: two files per stream.
worker_connections = 20000
timeout = 30
graceful_timeout = 5
control_socket_disable = True
loglevel = "warning"
