"""Transactions with reads, awaitable calls and one error type per kind, over the generated
Python bindings against a live sync-server."""

import asyncio

import pytest

import session_sync as ss

INSERT = "INSERT INTO notes(id, title, body, updated_at) VALUES (?1, ?2, '', 1)"


def config(server=None, token=None, db=None, **kw):
    return ss.DatabaseConfig(server_url=server.url if server else None, token=token, database=db, **kw)


def device(server, workdir, user, name, **kw):
    return ss.SyncDatabase.open(str(workdir / f"{name}.db"), config(server, server.token(user, name), "notes", **kw))


def count(db, table="notes"):
    return db.query(f"SELECT count(*) FROM {table}", []).rows[0][0]


class Body(ss.TransactionBody):
    """A transaction body from a function."""

    def __init__(self, fn):
        self.fn = fn

    def run(self, tx):
        self.fn(tx)


def test_a_transaction_reads_its_own_writes_and_commits_whole(server, workdir):
    server.new_database("tina", "notes")
    db = device(server, workdir, "tina", "a")
    seen = []

    def body(tx):
        tx.execute(INSERT, [1, "first"])
        tx.execute_batch([ss.Statement(sql=INSERT, params=[2, "second"])])
        # The query runs inside the transaction: it sees both uncommitted rows.
        seen.append(tx.query("SELECT title FROM notes ORDER BY id", []).rows)
        tx.execute("UPDATE notes SET body = ?1 WHERE id = 1", [f"{len(seen[0])} rows seen"])

    db.transaction(Body(body))
    assert seen == [[["first"], ["second"]]]
    assert db.query("SELECT body FROM notes WHERE id = 1", []).rows == [["2 rows seen"]]
    assert db.status().pending_changesets == 1  # one transaction, captured as one
    db.shutdown()


def test_a_failing_body_rolls_back_and_its_object_dies(server, workdir):
    server.new_database("uma", "notes")
    db = device(server, workdir, "uma", "a")
    kept = []

    def fails_in_sql(tx):
        tx.execute(INSERT, [1, "gone"])
        tx.execute(INSERT, [1, "duplicate"])

    with pytest.raises(ss.SyncError.InvalidSql):
        db.transaction(Body(fails_in_sql))

    def raises(tx):
        tx.execute(INSERT, [2, "gone too"])
        raise ValueError("the app changed its mind")

    with pytest.raises(ss.SyncError.Callback, match="changed its mind"):
        db.transaction(Body(raises))

    def calls_the_database(tx):
        kept.append(tx)
        db.execute(INSERT, [3, "would wait for itself"])

    with pytest.raises(ss.SyncError.InvalidUse):
        db.transaction(Body(calls_the_database))
    assert count(db) == 0 and db.status().pending_changesets == 0
    # The transaction object outlived its body: it refuses use.
    with pytest.raises(ss.SyncError.InvalidUse, match="ended"):
        kept[0].execute(INSERT, [4, "late"])
    with pytest.raises(ss.SyncError.InvalidUse):
        kept[0].query("SELECT 1", [])
    assert count(db) == 0
    db.shutdown()


def test_awaited_calls_sync_two_devices(server, workdir):
    server.new_database("vic", "notes")

    async def scenario():
        a = await ss.SyncDatabase.open_async(str(workdir / "a.db"), config(server, server.token("vic", "a"), "notes"))
        b = await ss.SyncDatabase.open_async(str(workdir / "b.db"), config(server, server.token("vic", "b"), "notes"))
        assert await a.execute_async(INSERT, [1, "awaited"]) == 1
        await a.execute_batch_async([ss.Statement(sql=INSERT, params=[2, "batch"])])
        await a.transaction_async(Body(lambda tx: tx.execute(INSERT, [3, "in a transaction"])))
        # The event loop stays free while a sync runs on its own thread.
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        t = asyncio.ensure_future(ticker())
        report = await a.sync_now_async()
        t.cancel()
        assert report.pushed_batches >= 1 and ticks > 0
        pulled = await b.sync_now_async()
        assert pulled.pulled_entries >= 1 and pulled.changed_tables == ["notes"]
        rows = (await b.query_async("SELECT id, title FROM notes ORDER BY id", [])).rows
        assert rows == [[1, "awaited"], [2, "batch"], [3, "in a transaction"]]
        assert (await b.verify_async()).equal
        assert (await b.upgrade_async()).upgraded_to is None
        with pytest.raises(ss.SyncError.InvalidSql):
            await b.query_async("SELEC", [])
        a.shutdown()
        b.shutdown()

    asyncio.run(scenario())


def test_each_error_kind_is_its_own_type(server, workdir):
    server.new_database("wes", "notes")
    # Auth: an unknown token.
    with pytest.raises(ss.SyncError.Auth):
        ss.SyncDatabase.open(str(workdir / "x.db"), config(server, "ss1_not-a-real-token", "notes"))
    # NotFound: no such database on the server.
    with pytest.raises(ss.SyncError.NotFound):
        ss.SyncDatabase.open(str(workdir / "y.db"), config(server, server.token("wes", "y"), "nothing-here"))
    # Config: server settings go together; an FTS index on no such table.
    with pytest.raises(ss.SyncError.Config):
        ss.SyncDatabase.open(str(workdir / "z.db"), config(server, None, "notes"))
    with pytest.raises(ss.SyncError.Config):
        device(server, workdir, "wes", "f", fts=[ss.FtsIndex(table="nope", columns=["x"])])
    # Io: a directory that does not exist.
    with pytest.raises(ss.SyncError.Io):
        ss.SyncDatabase.open(str(workdir / "no" / "such" / "dir.db"), config())
    # Corruption: a file that is not a database.
    junk = workdir / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ss.SyncError.Corruption):
        ss.SyncDatabase.open(str(junk), config()).query("SELECT * FROM sqlite_master", [])
    assert junk.read_bytes() == b"not a database at all" * 100
    # Schema: a table that cannot be synced (no primary key); nothing is created.
    local = ss.SyncDatabase.open(str(workdir / "local.db"), config())
    with pytest.raises(ss.SyncError.Schema, match="PRIMARY KEY"):
        local.execute("CREATE TABLE no_key(v)", [])
    assert local.query("SELECT count(*) FROM sqlite_master WHERE name = 'no_key'", []).rows == [[0]]
    local.shutdown()
    # A schema change in a database that syncs is refused SQL (its schema is the server's).
    a = device(server, workdir, "wes", "a")
    with pytest.raises(ss.SyncError.InvalidSql, match="migrations"):
        a.execute("CREATE TABLE local_only(id INTEGER PRIMARY KEY)", [])
    assert a.query("SELECT count(*) FROM sqlite_master WHERE name = 'local_only'", []).rows == [[0]]
    # ReadOnly (not Auth): a token whose grant is read-only cannot push.
    server.admin("user", "add", "reader")
    server.admin("db", "grant", "notes", "reader", "--read-only")
    r = device(server, workdir, "reader", "r")
    r.execute(INSERT, [1, "stays local"])
    with pytest.raises(ss.SyncError.ReadOnly):
        r.sync_now()
    assert r.status().pending_changesets == 1
    r.shutdown()
    a.shutdown()


def test_rowids_exhausted_and_too_large_are_their_own_types(server, workdir):
    server.stop()
    server.start("--max-transaction-bytes", "20000")
    server.new_database("xia", "notes")
    ranges = ss.RowidMode.RANGES(lease_size=3, refill_below=1)
    a = device(server, workdir, "xia", "a", rowids=ranges)
    a.sync_now()
    # TooLarge: one transaction past the server's limit; nothing is written.
    big = [ss.Statement(sql=INSERT, params=[i, "x" * 500]) for i in range(100, 200)]
    with pytest.raises(ss.SyncError.TooLarge):
        a.execute_batch(big)
    assert count(a) == 0
    # RowidsExhausted: offline, the leased range runs out.
    server.stop()
    with pytest.raises(ss.SyncError.RowidsExhausted):
        for _ in range(10):
            a.new_id()
    a.shutdown()


def test_closed_and_in_use_are_their_own_types(workdir):
    path = str(workdir / "one.db")
    db = ss.SyncDatabase.open(path, config())
    with pytest.raises(ss.SyncError.InUse):
        ss.SyncDatabase.open(path, config())
    db.shutdown()
    with pytest.raises(ss.SyncError.Closed):
        db.execute("SELECT 1", [])

    async def awaited():
        with pytest.raises(ss.SyncError.Closed):
            await db.sync_now_async()

    asyncio.run(awaited())
