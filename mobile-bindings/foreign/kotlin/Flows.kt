// Hand-written Kotlin helpers shipped next to the generated bindings: a watched query and the
// live sync status as cold, conflated Flows (collecting subscribes, cancelling the collector
// cancels the subscription). Needs kotlinx-coroutines.
package uniffi.session_sync

import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.flow.conflate

/**
 * The rows of [sql] now, then after every committed local or remote write that touched a
 * table it reads. A slow collector gets the latest rows, not every step. The flow fails with
 * the [SyncException] of a query that stops working.
 */
fun SyncDatabase.watchFlow(sql: String, params: List<Any?> = listOf()): Flow<QueryResult> =
    callbackFlow {
        val subscription = watch(
            sql,
            params,
            object : QueryWatcher {
                override fun onRows(result: QueryResult) {
                    trySend(result)
                }

                override fun onError(error: SyncException) {
                    close(error)
                }
            },
        )
        awaitClose { subscription.cancel() }
    }.conflate()

/** The live sync status now, then whenever any of it changes (conflated, like [watchFlow]). */
fun SyncDatabase.statusFlow(): Flow<LiveStatus> =
    callbackFlow {
        val subscription = watchStatus(
            object : StatusWatcher {
                override fun onStatus(status: LiveStatus) {
                    trySend(status)
                }
            },
        )
        awaitClose { subscription.cancel() }
    }.conflate()
