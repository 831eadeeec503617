// Native values, transactions with reads, suspend functions and one exception type per error
// kind, over the generated Kotlin bindings against a live sync-server.
import java.io.File
import kotlinx.coroutines.async
import kotlinx.coroutines.runBlocking
import uniffi.session_sync.*

const val INSERT = "INSERT INTO notes(id, title, body, updated_at) VALUES (?1, ?2, '', 1)"

inline fun <reified E : Throwable> expect(what: String, block: () -> Unit): E {
    try {
        block()
    } catch (e: Throwable) {
        if (e is E) return e
        throw AssertionError("$what: expected ${E::class.simpleName}, got $e", e)
    }
    throw AssertionError("$what: expected ${E::class.simpleName}, got no error")
}

fun device(server: Server, dir: File, user: String, name: String, rowids: RowidMode? = null) =
    SyncDatabase.open(
        File(dir, "$name.db").path,
        DatabaseConfig(serverUrl = server.url, token = server.token(user, name), database = "notes", rowids = rowids),
    )

fun count(db: SyncDatabase): Any? = db.query("SELECT count(*) FROM notes", listOf()).rows[0][0]

fun nativeValues() = withServer { _, dir ->
    val db = SyncDatabase.open(File(dir, "local.db").path, config(null, null, null))
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)", listOf())
    val values = listOf<Any?>(null, Long.MIN_VALUE, 1.5, "héllo", byteArrayOf(0, -1))
    values.forEachIndexed { i, v -> db.execute("INSERT INTO t(id, v) VALUES (?1, ?2)", listOf(i, v)) }
    db.execute("INSERT INTO t(id, v) VALUES (?1, ?2)", listOf(10, true))
    db.execute("INSERT INTO t(id, v) VALUES (?1, ?2)", listOf(11, 2.5f))
    val result = db.query("SELECT v, typeof(v) FROM t ORDER BY id", listOf())
    val got = result.rows.map { it[0] }
    check(got[0] == null && got[1] == Long.MIN_VALUE && got[2] == 1.5 && got[3] == "héllo") { "$got" }
    check((got[4] as ByteArray).contentEquals(byteArrayOf(0, -1)))
    check(got[5] == 1L && got[6] == 2.5) { "$got" }
    check(result.rows.map { it[1] } == listOf("null", "integer", "real", "text", "blob", "integer", "real"))
    check(result.maps()[3] == mapOf("v" to "héllo", "typeof(v)" to "text")) { "${result.maps()}" }
    check(result.toString().contains("héllo")) { result.toString() }
    // A value SQLite has no type for is refused before the call, which changes nothing.
    val e = expect<IllegalArgumentException>("a list as a parameter") {
        db.execute("INSERT INTO t(id, v) VALUES (?1, ?2)", listOf(20, listOf(1)))
    }
    check(e.message!!.contains("SQLite value")) { e.message!! }
    check(db.query("SELECT count(*) FROM t", listOf()).rows == listOf(listOf<Any?>(7L)))
    db.shutdown()
}

fun transactions() = withServer { server, dir ->
    server.database("tina", "notes")
    val db = device(server, dir, "tina", "a")
    val seen = db.transaction { tx ->
        tx.execute(INSERT, listOf(1, "first"))
        tx.execute(INSERT, listOf(2, "second"))
        tx.query("SELECT title FROM notes ORDER BY id", listOf()).rows.map { it[0] }
    }
    check(seen == listOf("first", "second")) { "$seen" }
    check(db.status().pendingChangesets == 1L)
    // The app's own exception comes out as itself; nothing of the body stays.
    class Changed : Exception("changed my mind")
    expect<Changed>("an exception in the body") {
        db.transaction { tx ->
            tx.execute(INSERT, listOf(3, "gone"))
            throw Changed()
        }
    }
    expect<SyncException.InvalidSql>("a failing statement in the body") {
        db.transaction { tx -> tx.execute(INSERT, listOf(1, "duplicate")) }
    }
    var kept: Transaction? = null
    expect<SyncException.InvalidUse>("a database call inside the body") {
        db.transaction { tx ->
            kept = tx
            db.execute(INSERT, listOf(4, "would wait for itself"))
        }
    }
    expect<SyncException.InvalidUse>("the transaction object after its body") {
        kept!!.execute(INSERT, listOf(5, "late"))
    }
    check(count(db) == 2L) { "${count(db)}" }
    db.shutdown()
}

fun suspendingCalls() = withServer { server, dir ->
    server.database("vic", "notes")
    runBlocking {
        val cfg = { name: String ->
            DatabaseConfig(serverUrl = server.url, token = server.token("vic", name), database = "notes")
        }
        val a = SyncDatabase.openAsync(File(dir, "a.db").path, cfg("a"))
        val b = SyncDatabase.openAsync(File(dir, "b.db").path, cfg("b"))
        check(a.executeAsync(INSERT, listOf(1, "suspended")) == 1L)
        a.transactionAsync { tx -> tx.execute(INSERT, listOf(2, "in a transaction")) }
        // Both syncs in flight at once on one thread: neither blocks it.
        val pushed = async { a.syncNowAsync() }
        check(pushed.await().pushedBatches >= 1L)
        val pulled = b.syncNowAsync()
        check(pulled.changedTables == listOf("notes")) { "$pulled" }
        val rows = b.queryAsync("SELECT id, title FROM notes ORDER BY id", listOf()).rows
        check(rows == listOf(listOf<Any?>(1L, "suspended"), listOf<Any?>(2L, "in a transaction"))) { "$rows" }
        check(b.verifyAsync().equal)
        expect<SyncException.InvalidSql>("bad SQL, suspended") { runBlocking { b.queryAsync("SELEC", listOf()) } }
        a.shutdown()
        b.shutdown()
    }
}

fun eachErrorKind() = withServer { server, dir ->
    server.database("wes", "notes")
    expect<SyncException.NotFound>("no such database") {
        SyncDatabase.open(
            File(dir, "y.db").path,
            DatabaseConfig(serverUrl = server.url, token = server.token("wes", "y"), database = "nothing-here"),
        )
    }
    expect<SyncException.Config>("a server without a token") {
        SyncDatabase.open(File(dir, "z.db").path, DatabaseConfig(serverUrl = server.url, database = "notes"))
    }
    expect<SyncException.Io>("a directory that does not exist") {
        SyncDatabase.open(File(dir, "no/such/dir.db").path, config(null, null, null))
    }
    val a = device(server, dir, "wes", "a", RowidMode.Ranges(leaseSize = 3, refillBelow = 1))
    expect<SyncException.InvalidSql>("a schema change in a database that syncs") {
        a.execute("CREATE TABLE local_only(id INTEGER PRIMARY KEY)", listOf())
    }
    val local = SyncDatabase.open(File(dir, "local.db").path, config(null, null, null))
    expect<SyncException.Schema>("a table without a primary key") { local.execute("CREATE TABLE no_key(v)", listOf()) }
    local.shutdown()
    server.admin("user", "add", "reader")
    server.admin("db", "grant", "notes", "reader", "--read-only")
    val r = device(server, dir, "reader", "r")
    r.execute(INSERT, listOf(1, "stays local"))
    expect<SyncException.ReadOnly>("a push with a read-only grant") { r.syncNow() }
    r.shutdown()
    a.syncNow()
    server.stop()
    expect<SyncException.RowidsExhausted>("the leased range runs out offline") {
        repeat(10) { a.newId() }
    }
    a.shutdown()
    expect<SyncException.Closed>("a call after shutdown") { a.status() }
}
