// Hand-written Swift helpers shipped next to the generated bindings: SQL values from literals,
// so parameters read `[1, "title", nil]`; plain values out of rows; a watched query and the
// live sync status as AsyncSequences. Not compiled on Linux (see mobile-bindings/README.md).
import Foundation

extension SqlValue: ExpressibleByNilLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByBooleanLiteral
{
    public init(nilLiteral: ()) { self = .null }
    public init(integerLiteral value: Int64) { self = .integer(value: value) }
    public init(floatLiteral value: Double) { self = .real(value: value) }
    public init(stringLiteral value: String) { self = .text(value: value) }
    public init(booleanLiteral value: Bool) { self = .integer(value: value ? 1 : 0) }

    /// The value as a plain Swift value: `nil`, `Int64`, `Double`, `String` or `Data`.
    public var native: Any? {
        switch self {
        case .null: return nil
        case let .integer(value): return value
        case let .real(value): return value
        case let .text(value): return value
        case let .blob(value): return value
        }
    }
}

extension QueryResult {
    /// Each row as a dictionary from column name to plain value.
    public var maps: [[String: Any?]] {
        rows.map { row in Dictionary(uniqueKeysWithValues: zip(columns, row.map { $0.native })) }
    }
}

extension SyncDatabase {
    /// The rows of `sql` now, then after every committed local or remote write that touched a
    /// table it reads; the newest only, when the consumer is slow. Ends with the error of a
    /// query that stops working; leaving the loop cancels the subscription.
    public func watchSequence(sql: String, params: [SqlValue] = []) -> AsyncThrowingStream<QueryResult, Error> {
        AsyncThrowingStream(bufferingPolicy: .bufferingNewest(1)) { continuation in
            do {
                let subscription = try self.watch(
                    sql: sql, params: params, watcher: StreamQueryWatcher(continuation))
                continuation.onTermination = { _ in subscription.cancel() }
            } catch {
                continuation.finish(throwing: error)
            }
        }
    }

    /// The live sync status now, then whenever any of it changes (newest only, like
    /// `watchSequence`).
    public func statusSequence() -> AsyncThrowingStream<LiveStatus, Error> {
        AsyncThrowingStream(bufferingPolicy: .bufferingNewest(1)) { continuation in
            do {
                let subscription = try self.watchStatus(watcher: StreamStatusWatcher(continuation))
                continuation.onTermination = { _ in subscription.cancel() }
            } catch {
                continuation.finish(throwing: error)
            }
        }
    }
}

private final class StreamQueryWatcher: QueryWatcher, @unchecked Sendable {
    let continuation: AsyncThrowingStream<QueryResult, Error>.Continuation
    init(_ continuation: AsyncThrowingStream<QueryResult, Error>.Continuation) {
        self.continuation = continuation
    }
    func onRows(result: QueryResult) { continuation.yield(result) }
    func onError(error: SyncError) { continuation.finish(throwing: error) }
}

private final class StreamStatusWatcher: StatusWatcher, @unchecked Sendable {
    let continuation: AsyncThrowingStream<LiveStatus, Error>.Continuation
    init(_ continuation: AsyncThrowingStream<LiveStatus, Error>.Continuation) {
        self.continuation = continuation
    }
    func onStatus(status: LiveStatus) { continuation.yield(status) }
}
