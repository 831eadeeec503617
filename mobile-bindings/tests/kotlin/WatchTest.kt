// Watched queries and the live status as Flows (the helpers of foreign/kotlin/Flows.kt), over
// the generated Kotlin bindings against a live sync-server.
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import uniffi.session_sync.*

fun watchedQueryFlow() = withServer { server, dir ->
    server.database("wanda", "notes")
    val a = device(server, dir, "wanda", "a")
    val b = device(server, dir, "wanda", "b")
    runBlocking {
        withTimeout(30_000) {
            val seen = Channel<List<List<Any?>>>(Channel.UNLIMITED)
            val collector = launch(Dispatchers.Default) {
                b.watchFlow("SELECT title FROM notes ORDER BY id").collect { seen.send(it.rows) }
            }
            check(seen.receive() == listOf<List<Any?>>()) // the current rows first
            b.execute(INSERT, listOf(1, "local"))
            while (seen.receive() != listOf(listOf<Any?>("local"))) {}
            a.execute(INSERT, listOf(2, "remote"))
            a.syncNow()
            b.syncNow()
            while (seen.receive() != listOf(listOf<Any?>("local"), listOf<Any?>("remote"))) {}
            collector.cancel()
        }
    }
    expect<SyncException.InvalidSql>("a query that does not prepare") {
        runBlocking { b.watchFlow("SELECT nope FROM notes").collect {} }
    }
    a.shutdown()
    b.shutdown()
}

fun statusFlowShowsAPush() = withServer("--max-body-bytes", "65536") { server, dir ->
    server.database("yuri", "notes")
    val a = device(server, dir, "yuri", "a")
    val insert = "INSERT INTO notes(id, title, body, updated_at) VALUES (?1, ?2, ?3, 1)"
    a.executeBatch((0 until 1000).map { Statement(insert, listOf(it, "note $it", "x".repeat(2000))) })
    runBlocking {
        withTimeout(60_000) {
            val seen = Channel<LiveStatus>(Channel.UNLIMITED)
            val collector = launch(Dispatchers.Default) { a.statusFlow().collect { seen.send(it) } }
            while (seen.receive().pendingTransactions != 1L) {}
            val sync = launch(Dispatchers.Default) { a.syncNowAsync() }
            val phases = mutableListOf<SyncPhase>()
            while (true) {
                val s = seen.receive()
                phases += s.phase
                if (s.phase == SyncPhase.IDLE && s.pendingTransactions == 0L) break
            }
            sync.join()
            collector.cancel()
            check(SyncPhase.PUSHING in phases) { "no push seen: $phases" }
        }
    }
    a.shutdown()
}

val watchTests: List<Pair<String, () -> Unit>> = listOf(
    "watchedQueryFlow" to ::watchedQueryFlow,
    "statusFlowShowsAPush" to ::statusFlowShowsAPush,
)
