"""Drives the generated Python bindings (not Rust) against a live sync-server."""

import threading

import pytest

import session_sync as ss


def config(server=None, token=None, db=None, **kw):
    return ss.DatabaseConfig(server_url=server.url if server else None, token=token, database=db, **kw)


def notes(db):
    return [tuple(row) for row in db.query("SELECT id, title, body FROM notes ORDER BY id", []).rows]


def two_devices(server, workdir):
    server.new_database("alice", "notes")
    a = ss.SyncDatabase.open(str(workdir / "a.db"), config(server, server.token("alice", "a"), "notes"))
    b = ss.SyncDatabase.open(str(workdir / "b.db"), config(server, server.token("alice", "b"), "notes"))
    return a, b


def test_two_devices_edit_offline_then_converge(server, workdir):
    a, b = two_devices(server, workdir)
    insert = "INSERT INTO notes(id, title, body, updated_at) VALUES (?1, ?2, ?3, 1)"
    a.execute(insert, [1, "from a", ""])
    b.execute_batch(
        [
            ss.Statement(sql=insert, params=[2, "from b", ""]),
            ss.Statement(sql=insert, params=[3, "also b", ""]),
        ]
    )
    for db in (a, b, a):
        db.sync_now()
    assert len(notes(a)) == 3 and notes(a) == notes(b)
    # Same row, different columns, edited on both devices offline: both edits survive.
    a.execute("UPDATE notes SET title = 'a title' WHERE id = 2", [])
    b.execute("UPDATE notes SET body = 'b body' WHERE id = 2", [])
    for db in (a, b, a, b):
        db.sync_now()
    assert notes(a) == notes(b)
    assert (2, "a title", "b body") in notes(a)
    assert len(notes(a)) == 3
    assert a.status().pending_changesets == 0
    assert b.status().cursor == a.status().cursor
    # Both prove their synced state is the server's: same history, same content.
    for db in (a, b):
        v = db.verify()
        assert v.equal and v.seq == db.status().cursor, v
        assert v.local == v.server and len(v.local) == 64
        assert db.status().repairs == 0 and db.status().checksum == v.local
    a.shutdown()
    b.shutdown()


def test_values_are_plain_python_values_both_ways(workdir):
    db = ss.SyncDatabase.open(str(workdir / "local.db"), config())
    db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v)", [])
    values = [None, -(2**63), 1.5, "héllo", b"\x00\xff"]
    for i, v in enumerate(values):
        db.execute("INSERT INTO t(id, v) VALUES (?1, ?2)", [i, v])
    # Accepted too: bool as 0/1, bytearray and memoryview as bytes, a tagged SqlValue as is.
    db.execute_batch(
        [
            ss.Statement(sql="INSERT INTO t(id, v) VALUES (?1, ?2)", params=[10, True]),
            ss.Statement(sql="INSERT INTO t(id, v) VALUES (?1, ?2)", params=[11, bytearray(b"ab")]),
            ss.Statement(sql="INSERT INTO t(id, v) VALUES (?1, ?2)", params=[12, ss.SqlValue.TEXT(value="tagged")]),
        ]
    )
    result = db.query("SELECT v, typeof(v) FROM t ORDER BY id", [])
    assert result.columns == ["v", "typeof(v)"]
    assert [row[0] for row in result.rows] == values + [1, b"ab", "tagged"]
    assert [row[1] for row in result.rows] == ["null", "integer", "real", "text", "blob", "integer", "blob", "text"]
    # Records print their values.
    assert "héllo" in repr(result) and "1.5" in repr(result)
    assert "tagged" in str(result)
    # A value SQLite has no type for is refused before the call, which changes nothing.
    with pytest.raises(TypeError, match="dict"):
        db.execute("INSERT INTO t(id, v) VALUES (?1, ?2)", [20, {"a": 1}])
    with pytest.raises(TypeError):
        db.query("SELECT ?1", [object()])
    assert db.query("SELECT count(*) FROM t", []).rows == [[8]]
    db.shutdown()


def test_new_ids_are_positive_and_distinct(workdir):
    db = ss.SyncDatabase.open(str(workdir / "ids.db"), config())
    ids = {db.new_id() for _ in range(100)}
    assert len(ids) == 100 and min(ids) > 0
    db.shutdown()


def test_bad_token_is_auth(server, workdir):
    server.new_database("bob", "notes")
    with pytest.raises(ss.SyncError.Auth):
        ss.SyncDatabase.open(str(workdir / "x.db"), config(server, "ss1_not-a-real-token", "notes"))


def test_server_down_is_network_and_local_writes_continue(server, workdir):
    a, _ = two_devices(server, workdir)
    server.stop()
    a.execute("INSERT INTO notes(id, title, body, updated_at) VALUES (7, 'offline', '', 1)", [])
    with pytest.raises(ss.SyncError.Network):
        a.sync_now()
    status = a.status()
    assert status.pending_changesets == 1
    assert status.last_error
    a.shutdown()


def test_bad_sql_is_invalid_sql_and_changes_nothing(workdir):
    db = ss.SyncDatabase.open(str(workdir / "sql.db"), config())
    db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT)", [])
    with pytest.raises(ss.SyncError.InvalidSql):
        db.execute("INSER INTO t VALUES (1, 'x')", [])
    with pytest.raises(ss.SyncError.InvalidSql):
        db.execute_batch(
            [
                ss.Statement(sql="INSERT INTO t VALUES (1, 'x')", params=[]),
                ss.Statement(sql="INSERT INTO t VALUES (1, 'duplicate')", params=[]),
            ]
        )
    assert db.query("SELECT count(*) FROM t", []).rows == [[0]]
    db.execute("INSERT INTO t VALUES (1, 'kept')", [])
    with pytest.raises(ss.SyncError.InvalidSql) as refused:
        db.query("DELETE FROM t", [])  # readers are read-only: SQLite itself refuses
    assert "readonly" in str(refused.value)
    # The hint names this API's calls, not the Rust library's.
    assert "execute()" in str(refused.value) and "write()" not in str(refused.value)
    assert db.query("SELECT count(*) FROM t", []).rows == [[1]]
    db.shutdown()


def test_a_rejected_transaction_waits_in_the_queue_to_be_redone_or_discarded(rejecting_server, workdir):
    a, b = two_devices(rejecting_server, workdir)
    a.execute("INSERT INTO notes(id, title, body, updated_at) VALUES (1, 'first', '', 1)", [])
    a.sync_now()
    b.sync_now()
    # Both edit the note offline; a pushes first, so the server rejects b's transaction.
    a.execute("UPDATE notes SET title = 'by a' WHERE id = 1", [])
    b.execute("UPDATE notes SET title = 'by b' WHERE id = 1", [])
    a.sync_now()
    report = b.sync_now()
    assert report.rejected_transactions == 1
    assert notes(b) == notes(a) == [(1, "by a", "")]
    shown = b.status()
    assert shown.conflicts == [] and shown.server_conflicts == []
    [rejected] = shown.rejected
    assert (rejected.reason, rejected.by, rejected.changes) == ("policy", "server", 1)
    # The row that blocked it: a's update, already on the server.
    blocking = rejected.blocking
    assert (blocking.kind, blocking.table) == ("DATA", "notes")
    assert blocking.pk == [1] and "by a" in blocking.current
    assert b.rejected() == shown.rejected
    [change] = b.rejected_changes(rejected.id)
    assert (change.table, change.op) == ("notes", "UPDATE")
    assert ss.SqlValue.TEXT(value="by b") in [v for v in change.new if v is not None]
    assert b.rejected_changes(12345) is None
    # Redo: a new local write over the current state (the conflict with a's row is resolved
    # in the redone change's favour and counted), pushed by the next sync.
    assert b.redo_rejected(rejected.id) == 1
    assert b.rejected() == []
    assert notes(b) == [(1, "by b", "")]
    b.sync_now()
    a.sync_now()
    assert notes(a) == [(1, "by b", "")]
    # A second clash, discarded this time: nothing else changes.
    a.execute("UPDATE notes SET title = 'by a again' WHERE id = 1", [])
    b.execute("UPDATE notes SET title = 'by b again' WHERE id = 1", [])
    a.sync_now()
    assert b.sync_now().rejected_transactions == 1
    [again] = b.rejected()
    assert b.discard_rejected(again.id) is True
    assert b.discard_rejected(again.id) is False
    assert b.rejected() == []
    assert notes(b) == notes(a) == [(1, "by a again", "")]
    with pytest.raises(ss.SyncError.NotFound):
        b.redo_rejected(again.id)
    assert "RejectedInfo" in repr(shown)  # records print their values
    a.shutdown()
    b.shutdown()


def test_a_second_open_of_the_same_file_is_in_use_until_shutdown(workdir):
    path = str(workdir / "one.db")
    first = ss.SyncDatabase.open(path, config())
    first.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT)", [])
    with pytest.raises(ss.SyncError.InUse):
        ss.SyncDatabase.open(path, config())
    first.execute("INSERT INTO t VALUES (1, 'still works')", [])
    first.shutdown()
    second = ss.SyncDatabase.open(path, config())
    assert second.query("SELECT v FROM t", []).rows == [["still works"]]
    second.shutdown()


def test_closed_database_says_closed(workdir):
    db = ss.SyncDatabase.open(str(workdir / "c.db"), config())
    db.shutdown()
    with pytest.raises(ss.SyncError.Closed):
        db.query("SELECT 1", [])


class Recorder(ss.ChangeListener):
    def __init__(self):
        self.calls = []
        self.event = threading.Event()

    def on_change(self, tables):
        self.calls.append(tables)
        self.event.set()


def test_change_listener_hears_remote_changes(server, workdir):
    a, b = two_devices(server, workdir)
    recorder = Recorder()
    b.set_change_listener(recorder)
    a.execute("INSERT INTO notes(id, title, body, updated_at) VALUES (1, 'hi', '', 1)", [])
    a.sync_now()
    report = b.sync_now()
    assert report.changed_tables == ["notes"]
    assert recorder.event.wait(10)
    assert ["notes"] in recorder.calls
    a.shutdown()
    b.shutdown()


def test_background_sync_delivers_without_sync_now(server, workdir):
    server.new_database("carol", "notes")
    cfg = lambda dev: config(  # noqa: E731
        server, server.token("carol", dev), "notes", background_sync=True, sync_interval_ms=60000
    )
    a = ss.SyncDatabase.open(str(workdir / "a.db"), cfg("a"))
    b = ss.SyncDatabase.open(str(workdir / "b.db"), cfg("b"))
    recorder = Recorder()
    b.set_change_listener(recorder)
    a.execute("INSERT INTO notes(id, title, body, updated_at) VALUES (5, 'pushed', '', 1)", [])
    assert recorder.event.wait(15), "the write on a reached b through server events"
    assert notes(b) == [(5, "pushed", "")]
    a.shutdown()
    b.shutdown()


def test_search_finds_rows_from_another_device(server, workdir):
    server.new_database("dave", "notes")
    fts = [ss.FtsIndex(table="notes", columns=["title", "body"])]
    a = ss.SyncDatabase.open(str(workdir / "a.db"), config(server, server.token("dave", "a"), "notes"))
    b = ss.SyncDatabase.open(str(workdir / "b.db"), config(server, server.token("dave", "b"), "notes", fts=fts))
    a.execute("INSERT INTO notes(id, title, body, updated_at) VALUES (9, 'grocery list', 'apples', 1)", [])
    a.sync_now()
    b.sync_now()
    hits = b.search("apples", 10)
    assert [(h.table, h.id) for h in hits] == [("notes", 9)]
    a.shutdown()
    b.shutdown()
