// Drives the generated Kotlin bindings (not Rust) against a live sync-server.
// Run by mobile-bindings/scripts/test-bindings.sh with KOTLIN=1; exits non-zero on failure.
import java.io.File
import java.nio.file.Files
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import uniffi.session_sync.*

val serverBin: String = System.getenv("SYNC_SERVER_BIN") ?: "target/debug/sync-server"

class Server(val dataDir: File) {
    private var proc: Process? = null
    var url: String = ""

    fun admin(vararg args: String): String {
        val p = ProcessBuilder(serverBin, "--data", dataDir.path, *args).redirectErrorStream(false).start()
        val out = p.inputStream.bufferedReader().readText().trim()
        check(p.waitFor() == 0) { "sync-server ${args.joinToString(" ")} failed" }
        return out
    }

    fun start(vararg serveArgs: String) {
        val p = ProcessBuilder(serverBin, "--data", dataDir.path, "serve", "--listen", "127.0.0.1:0", *serveArgs)
            .redirectError(ProcessBuilder.Redirect.DISCARD).start()
        proc = p
        val reader = p.inputStream.bufferedReader()
        while (true) {
            val line = reader.readLine() ?: error("sync-server exited before listening")
            if (line.startsWith("sync-server listening on ")) {
                url = line.substringAfter(" on ").trim()
                return
            }
        }
    }

    fun stop() {
        proc?.destroy()
        proc?.waitFor(30, TimeUnit.SECONDS)
        proc = null
    }

    fun database(user: String, db: String) {
        runCatching { admin("user", "add", user) }
        admin("db", "create", db, "--owner", user)
    }

    fun token(user: String, device: String) = admin("token", "issue", user, "--device", device)
}

fun config(server: Server?, token: String?, db: String?, fts: List<FtsIndex> = listOf()) =
    DatabaseConfig(serverUrl = server?.url, token = token, database = db, fts = fts)

fun notes(db: SyncDatabase): List<List<Any?>> =
    db.query("SELECT id, title, body FROM notes ORDER BY id", listOf()).rows

class Recorder : ChangeListener {
    val latch = CountDownLatch(1)
    @Volatile var tables: List<String> = listOf()
    override fun onChange(tables: List<String>) {
        this.tables = tables
        latch.countDown()
    }
}

fun withServer(vararg serveArgs: String, body: (Server, File) -> Unit) {
    val dir = Files.createTempDirectory("kt-sync").toFile()
    val server = Server(File(dir, "data"))
    server.start(*serveArgs)
    try {
        body(server, dir)
    } finally {
        server.stop()
        dir.deleteRecursively()
    }
}

fun twoDevicesConverge() = withServer { server, dir ->
    server.database("alice", "notes")
    val a = SyncDatabase.open(File(dir, "a.db").path, config(server, server.token("alice", "a"), "notes"))
    val b = SyncDatabase.open(File(dir, "b.db").path, config(server, server.token("alice", "b"), "notes"))
    val insert = "INSERT INTO notes(id, title, body, updated_at) VALUES (?1, ?2, '', 1)"
    a.execute(insert, listOf(1L, "from a"))
    b.execute(insert, listOf(2, "from b"))
    val recorder = Recorder()
    a.setChangeListener(recorder)
    listOf(a, b, a).forEach { it.syncNow() }
    check(notes(a) == notes(b)) { "devices differ: ${notes(a)} vs ${notes(b)}" }
    check(notes(a).size == 2)
    check(recorder.latch.await(10, TimeUnit.SECONDS) && recorder.tables == listOf("notes"))
    check(a.status().pendingChangesets == 0L)
    check(notes(a) == listOf(listOf(1L, "from a", ""), listOf(2L, "from b", ""))) { "${notes(a)}" }
    a.shutdown()
    b.shutdown()
}

fun typedErrors() = withServer { server, dir ->
    server.database("bob", "notes")
    try {
        SyncDatabase.open(File(dir, "x.db").path, config(server, "ss1_bogus", "notes"))
        error("a bad token was accepted")
    } catch (e: SyncException.Auth) {}
    val a = SyncDatabase.open(File(dir, "a.db").path, config(server, server.token("bob", "a"), "notes"))
    try {
        a.execute("INSER INTO notes VALUES (1)", listOf())
        error("bad SQL was accepted")
    } catch (e: SyncException.InvalidSql) {}
    a.execute("INSERT INTO notes(id, title, body, updated_at) VALUES (2, 'kept', '', 1)", listOf())
    try {
        a.query("DELETE FROM notes", listOf())
        error("a write through query was accepted")
    } catch (e: SyncException.InvalidSql) {
        check(e.message!!.contains("readonly")) { "not refused by SQLite: ${e.message}" }
        check(e.message!!.contains("execute()") && !e.message!!.contains("write()")) { e.message!! }
    }
    check(a.query("SELECT count(*) FROM notes", listOf()).rows == listOf(listOf<Any?>(1L)))
    try {
        SyncDatabase.open(File(dir, "a.db").path, config(server, server.token("bob", "a2"), "notes"))
        error("a second open of the same file was accepted")
    } catch (e: SyncException.InUse) {}
    server.stop()
    a.execute("INSERT INTO notes(id, title, body, updated_at) VALUES (3, 'offline', '', 1)", listOf())
    try {
        a.syncNow()
        error("sync with the server down succeeded")
    } catch (e: SyncException.Network) {}
    check(a.status().pendingChangesets == 2L)
    a.shutdown()
}

fun main() {
    val tests = listOf(
        "twoDevicesConverge" to ::twoDevicesConverge,
        "typedErrors" to ::typedErrors,
        "nativeValues" to ::nativeValues,
        "transactions" to ::transactions,
        "suspendingCalls" to ::suspendingCalls,
        "eachErrorKind" to ::eachErrorKind,
    ) + watchTests
    var failed = 0
    for ((name, test) in tests) {
        try {
            test()
            println("ok   $name")
        } catch (t: Throwable) {
            failed++
            println("FAIL $name: $t")
        }
    }
    if (failed > 0) kotlin.system.exitProcess(1)
}
