"""Defaults shared by the command line and the server, free of heavy imports.

`python -m server` reads these before importing the server itself: prometheus-
client must not be imported until PROMETHEUS_MULTIPROC_DIR is settled.
"""

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 50051
DEFAULT_SESSION_DB = "data/sessions.db"
DEFAULT_SESSION_TTL = "30d"
DEFAULT_GRACE_SECONDS = 10.0
# Live sessions the store may hold (all workers and replicas together), past
# which a new session is refused. Far above what one deployment keeps within
# the TTL (100,000 in 30 days is over 3,000 new patients a day), yet a bound
# on what a caller with a token can make the database hold.
DEFAULT_MAX_SESSIONS = 100_000
