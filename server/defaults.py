"""Defaults shared by the command line and the server, free of heavy imports.

`python -m server` reads these before importing the server itself: prometheus-
client must not be imported until PROMETHEUS_MULTIPROC_DIR is settled.
"""

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 50051
DEFAULT_SESSION_DB = "data/sessions.db"
DEFAULT_SESSION_TTL = "30d"
DEFAULT_GRACE_SECONDS = 10.0
