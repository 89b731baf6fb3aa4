"""SQLite WAL checkpoints in a background thread, off the writer's path.

By default SQLite checkpoints inside the commit that pushes the write-ahead log past 1,000 pages:
that commit then also copies the log into the database file and waits for a second fsync, and
the writer (with every request waiting on it) stands still meanwhile. :class:`WalCheckpointer`
runs ``PRAGMA wal_checkpoint(PASSIVE)`` on its own connection instead, once per interval when
the log was written since the last checkpoint; a passive checkpoint never blocks the writer or
the readers, and its fsync waits release the interpreter lock. The writer connection keeps a
distant automatic checkpoint (:data:`BACKSTOP_PAGES`) in case this thread falls behind, and
``journal_size_limit`` truncates the log file after it restarts.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading

log = logging.getLogger("threadline.store")

#: The writer's own automatic checkpoint, in pages: only reached when this thread falls behind.
BACKSTOP_PAGES = 65536
#: Size the log file is truncated to after a checkpoint lets it restart.
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024


class WalCheckpointer:
    """A daemon thread that checkpoints one SQLite database's write-ahead log while it is written."""

    def __init__(self, database: str, *, interval: float = 1.0) -> None:
        self.database = database
        self.wal = f"{database}-wal"
        self.interval = interval
        self.checkpoints = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="threadline-wal-checkpoint", daemon=True)

    def start(self) -> None:
        """Start checkpointing in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (a checkpoint under way finishes first)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def _wal_written_ns(self) -> int:
        try:
            return os.stat(self.wal).st_mtime_ns
        except OSError:
            return 0

    def _run(self) -> None:
        conn = sqlite3.connect(self.database, timeout=30, isolation_level=None, check_same_thread=False)
        checkpointed = self._wal_written_ns()
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            while not self._stop.wait(self.interval):
                written = self._wal_written_ns()
                if written == checkpointed:
                    continue
                checkpointed = written
                try:
                    busy, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:
                    log.warning("WAL checkpoint failed: %s", exc)
                    continue
                self.checkpoints += 1
                log.debug("WAL checkpoint: %s of %s frames copied (busy=%s)", done, frames, busy)
        finally:
            conn.close()


def truncate_wal(database: str, *, attempts: int = 20, busy_timeout_ms: int = 500) -> bool:
    """Copy the whole write-ahead log into the database file and truncate the log to zero bytes
    (``PRAGMA wal_checkpoint(TRUNCATE)``), on a connection of its own.

    The checkpoint must wait for every writer and for readers still using the log; another process
    (the ingest writer) may be writing, so it is retried ``attempts`` times, each waiting at most
    ``busy_timeout_ms`` for the locks (SQLite's busy handler does the waiting). Returns whether the
    log was truncated.
    """
    conn = sqlite3.connect(database, timeout=busy_timeout_ms / 1000, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        for attempt in range(1, attempts + 1):
            try:
                busy, frames, done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.OperationalError as exc:  # "database is locked": try again
                log.debug("WAL truncate attempt %d: %s", attempt, exc)
                continue
            if busy == 0:
                log.debug("WAL truncated after %d attempt(s) (%s of %s frames copied)", attempt, done, frames)
                return True
        log.warning("WAL not truncated after %d attempts: another connection kept it busy", attempts)
        return False
    finally:
        conn.close()
