"""Who is watching which session, and telling them that it moved on.

`WatchSession` subscribers wait here (`server.session_rpc.watch_session`).
A `ChangeFeed` wakes the watchers of a session when it may have changed; it
carries a session id only, never contents: the watcher reads the session
from the store itself. What wakes them:

- this process's own commits and erasures (`SessionManager.changed`);
- on PostgreSQL, every replica's, announced by the store's `NOTIFY` and heard
  by one listening connection per process (`PostgresSessionStore.listen`,
  on a thread of its own), fanned out here;
- on SQLite, nothing crosses processes: each watcher also looks at its
  session's version every `POLL_SECONDS` (one indexed read), which is how it
  sees the other worker processes' commits.

With a listener, watchers still look every `SAFETY_POLL_SECONDS`, in case a
notification was lost with its connection.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# SQLite: how long another worker's commit may wait to reach a watcher.
POLL_SECONDS = 0.1
# With a change feed from the database (PostgreSQL): a fallback only.
SAFETY_POLL_SECONDS = 5.0


class ChangeFeed:
    """Wakes the watchers of a session. `publish` may be called from any thread;
    everything else runs on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, store: Any) -> None:
        self._loop = loop
        self._watchers: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._stop = threading.Event()
        listen = getattr(store, "listen", None)  # a store that announces changes
        self.poll_seconds = POLL_SECONDS if listen is None else SAFETY_POLL_SECONDS
        if listen is not None:
            threading.Thread(
                target=listen, args=(self.publish, self._stop), name="session-changes", daemon=True
            ).start()

    def publish(self, session_id: str | None) -> None:
        """`session_id` may have changed (None: any session may have)."""
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake, session_id)

    def _wake(self, session_id: str | None) -> None:
        if session_id is None:
            targets = [event for events in self._watchers.values() for event in events]
        else:
            targets = list(self._watchers.get(session_id, ()))
        for event in targets:
            event.set()

    @contextmanager
    def subscribe(self, session_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever `session_id` may have changed."""
        event = asyncio.Event()
        self._watchers[session_id].add(event)
        try:
            yield event
        finally:
            watchers = self._watchers[session_id]
            watchers.discard(event)
            if not watchers:
                del self._watchers[session_id]

    def stop(self) -> None:
        """Stop listening to the database (the thread ends within a second)."""
        self._stop.set()
