// Hand-written Swift helpers shipped next to the generated bindings: SQL values from literals,
// so parameters read `[1, "title", nil]`, and plain values out of rows. Not compiled on Linux
// (see mobile-bindings/README.md).
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
