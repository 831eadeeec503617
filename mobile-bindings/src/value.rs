//! SQL values across the boundary: [`Value`], which apps see as their language's own values,
//! carried by [`SqlValue`], the tagged form uniffi moves.
//!
//! Parameters and rows are `Value`: a uniffi *custom type* whose wire form is `SqlValue`.
//! `mobile-bindings/uniffi.toml` tells the Kotlin and Python generators to convert it to and from
//! native values on the foreign side, so a Kotlin app passes `listOf(1L, "title", null)`
//! (`List<Any?>`) and a Python app `[1, "title", None]`, and reads rows the same way. Swift has
//! no such conversion in uniffi; it sees `SqlValue`, which the shipped `SessionSync.swift` makes
//! expressible by literals (`[1, "title", nil]`).
//!
//! | SQLite | Kotlin | Python | Swift |
//! |---|---|---|---|
//! | NULL | `null` | `None` | `.null` / `nil` |
//! | INTEGER | `Long` (`Int`, `Short`, `Byte`, `Boolean` accepted) | `int` (`bool` accepted) | `.integer` / integer literal |
//! | REAL | `Double` (`Float` accepted) | `float` | `.real` / float literal |
//! | TEXT | `String` | `str` | `.text` / string literal |
//! | BLOB | `ByteArray` | `bytes` (`bytearray`, `memoryview` accepted) | `.blob(Data)` |
//!
//! A value of any other type is refused on the foreign side before the call (Kotlin
//! `IllegalArgumentException`, Python `TypeError`), and the call does nothing.

use sync_client::Value;

/// One SQLite value in its tagged form: how [`Value`] travels, what Swift sees, and how the
/// changes of a rejected transaction keep "NULL" apart from "column not changed".
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
#[uniffi::export(Debug)]
pub enum SqlValue {
    /// SQL NULL.
    Null,
    /// 64-bit integer.
    Integer {
        /// The value.
        value: i64,
    },
    /// Double.
    Real {
        /// The value.
        value: f64,
    },
    /// UTF-8 text.
    Text {
        /// The value.
        value: String,
    },
    /// Bytes.
    Blob {
        /// The value.
        value: Vec<u8>,
    },
}

impl From<Value> for SqlValue {
    fn from(v: Value) -> Self {
        match v {
            Value::Null => SqlValue::Null,
            Value::Integer(value) => SqlValue::Integer { value },
            Value::Real(value) => SqlValue::Real { value },
            Value::Text(value) => SqlValue::Text { value },
            Value::Blob(value) => SqlValue::Blob { value },
        }
    }
}

impl From<SqlValue> for Value {
    fn from(v: SqlValue) -> Self {
        match v {
            SqlValue::Null => Value::Null,
            SqlValue::Integer { value } => Value::Integer(value),
            SqlValue::Real { value } => Value::Real(value),
            SqlValue::Text { value } => Value::Text(value),
            SqlValue::Blob { value } => Value::Blob(value),
        }
    }
}

uniffi::custom_type!(Value, SqlValue, {
    remote,
    lower: |v| SqlValue::from(v),
    try_lift: |s| Ok(Value::from(s)),
});

/// A value read from SQLite, as it crosses the boundary.
pub(crate) fn read_value(v: sync_client::rusqlite::types::ValueRef<'_>) -> Value {
    Value::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_storage_class_round_trips_through_its_tagged_form() {
        let values = [
            Value::Null,
            Value::Integer(i64::MIN),
            Value::Real(1.5),
            Value::Text("héllo".into()),
            Value::Blob(vec![0, 255]),
        ];
        for v in values {
            assert_eq!(Value::from(SqlValue::from(v.clone())), v);
        }
    }
}
