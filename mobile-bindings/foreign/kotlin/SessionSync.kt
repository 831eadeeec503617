// Hand-written Kotlin helpers shipped next to the generated bindings (same package): lambdas
// for transaction bodies, rows as maps, and (see Flows.kt) watched queries and the status as
// Flows. Compiled with the generated session_sync.kt; needs kotlinx-coroutines.
package uniffi.session_sync

/** Carries an app's own exception through the Rust call so [transaction] can rethrow it. */
private class BodyFailed(val original: Throwable) : RuntimeException(original)

private class LambdaBody<T>(private val block: (Transaction) -> T) : TransactionBody {
    @Volatile var result: Result<T>? = null

    override fun run(tx: Transaction) {
        try {
            result = Result.success(block(tx))
        } catch (e: SyncException) {
            throw e
        } catch (e: Throwable) {
            result = Result.failure(e)
            throw SyncException.Callback("${e::class.qualifiedName}: ${e.message}")
        }
    }

    fun finish(): T {
        result?.exceptionOrNull()?.let { throw it }
        @Suppress("UNCHECKED_CAST")
        return result!!.getOrThrow()
    }

    fun rethrowOriginal(e: SyncException): Nothing {
        result?.exceptionOrNull()?.let { throw it }
        throw e
    }
}

/**
 * Runs [block] in one local transaction and returns its value: `tx.execute` and `tx.query`
 * share the transaction, queries see its writes. Returning commits; throwing rolls back and
 * rethrows the same exception.
 */
fun <T> SyncDatabase.transaction(block: (Transaction) -> T): T {
    val body = LambdaBody(block)
    try {
        transaction(body)
    } catch (e: SyncException) {
        body.rethrowOriginal(e)
    }
    return body.finish()
}

/** [transaction], suspending: the caller's thread does not wait for the writer. */
suspend fun <T> SyncDatabase.transactionAsync(block: (Transaction) -> T): T {
    val body = LambdaBody(block)
    try {
        transactionAsync(body)
    } catch (e: SyncException) {
        body.rethrowOriginal(e)
    }
    return body.finish()
}

/** Each row as a map from column name to value. */
fun QueryResult.maps(): List<Map<String, Any?>> = rows.map { row -> columns.zip(row).toMap() }
