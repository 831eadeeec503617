"""Watched queries and the live status stream over the generated Python bindings, against a
live sync-server."""

import queue
import time

import pytest

import session_sync as ss

INSERT = "INSERT INTO notes(id, title, body, updated_at) VALUES (?1, ?2, ?3, 1)"


def config(server, token, **kw):
    return ss.DatabaseConfig(server_url=server.url, token=token, database="notes", **kw)


def two_devices(server, workdir, user):
    server.new_database(user, "notes")
    a = ss.SyncDatabase.open(str(workdir / "a.db"), config(server, server.token(user, "a")))
    b = ss.SyncDatabase.open(str(workdir / "b.db"), config(server, server.token(user, "b")))
    return a, b


class Rows(ss.QueryWatcher):
    def __init__(self):
        self.deliveries = queue.Queue()

    def on_rows(self, result):
        self.deliveries.put(result.rows)

    def on_error(self, error):
        self.deliveries.put(error)

    def until(self, expected, timeout=15):
        """Waits for a delivery equal to `expected`; returns those seen before it."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            rows = self.deliveries.get(timeout=max(0.01, deadline - time.monotonic()))
            if rows == expected:
                return seen
            seen.append(rows)


class Statuses(ss.StatusWatcher):
    def __init__(self):
        self.seen = queue.Queue()

    def on_status(self, status):
        self.seen.put(status)

    def until(self, pred, timeout=30):
        """Every status up to and including the first that `pred` accepts."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            got.append(self.seen.get(timeout=max(0.01, deadline - time.monotonic())))
            if pred(got[-1]):
                return got


def test_a_watched_query_sees_local_writes_and_remote_changes_and_stops_when_cancelled(server, workdir):
    a, b = two_devices(server, workdir, "wanda")
    rows = Rows()
    sub = b.watch("SELECT title FROM notes WHERE body = ?1 ORDER BY id", ["x"], rows)
    rows.until([])  # the current result first
    b.execute(INSERT, [1, "local", "x"])
    rows.until([["local"]])
    # A write on another device, arriving with a sync.
    a.execute(INSERT, [2, "remote", "x"])
    a.sync_now()
    b.sync_now()
    rows.until([["local"], ["remote"]])
    # A write to a table the query does not read delivers nothing; the next one that matters
    # is the next delivery.
    b.execute("INSERT INTO tags(id, name) VALUES (1, 'unrelated')", [])
    b.execute(INSERT, [3, "third", "x"])
    assert rows.until([["local"], ["remote"], ["third"]]) == []
    sub.cancel()
    sub.cancel()
    b.execute(INSERT, [4, "unheard", "x"])
    with pytest.raises(queue.Empty):
        rows.deliveries.get(timeout=0.5)
    a.shutdown()
    b.shutdown()


def test_a_query_that_cannot_be_watched_fails_at_once(server, workdir):
    a, _ = two_devices(server, workdir, "xena")
    with pytest.raises(ss.SyncError.InvalidSql):
        a.watch("SELECT nope FROM notes", [], Rows())
    with pytest.raises(ss.SyncError.InvalidSql):
        a.watch("DELETE FROM notes", [], Rows())
    a.shutdown()
    with pytest.raises(ss.SyncError.Closed):
        a.watch("SELECT 1", [], Rows())


def test_the_status_stream_shows_a_large_push_in_progress(server, workdir):
    # Small request bodies: the large transaction below is uploaded in many parts.
    server.stop()
    server.start("--max-body-bytes", "65536")
    a, _ = two_devices(server, workdir, "yuri")
    statuses = Statuses()
    sub = a.watch_status(statuses)
    statuses.until(lambda s: s.phase == ss.SyncPhase.IDLE)
    a.execute_batch([ss.Statement(sql=INSERT, params=[i, f"note {i}", "x" * 2000]) for i in range(1000)])
    pending = statuses.until(lambda s: s.pending_transactions == 1)[-1]
    assert pending.pending_bytes > 1_000_000, pending
    assert a.sync_status().pending_transactions == 1
    a.sync_now()
    seen = statuses.until(lambda s: s.phase == ss.SyncPhase.IDLE and s.pending_transactions == 0)
    pushing = [s for s in seen if s.phase == ss.SyncPhase.PUSHING]
    assert pushing, [s.phase for s in seen]
    assert any(s.progress is not None and s.progress.done > 0 for s in pushing), pushing
    assert seen[-1].last_error is None and seen[-1].online is True
    assert "PUSHING" in repr(pushing[0]) or "Pushing" in repr(pushing[0])
    sub.cancel()
    a.shutdown()
