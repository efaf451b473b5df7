"""gunicorn settings for the example app: gevent workers (gunicorn
monkey-patches each worker before it serves), enough simultaneous
connections per worker for the 1,000-connection benchmark.

Environment: WEBAPP_BIND (default 127.0.0.1:8000), WEBAPP_WORKERS (1).
Add ``--preload`` on the command line to import the app in the master.
"""

import os

bind = os.environ.get("WEBAPP_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEBAPP_WORKERS", "1"))
worker_class = "gevent"
worker_connections = 10000
keepalive = 75
backlog = 4096
accesslog = None
loglevel = "warning"
