//! SQLite values as they appear in changesets, owned.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// One SQLite value: the five storage classes.
///
/// A column that a change does not carry (an unchanged column of an UPDATE) is represented by
/// `None` in an `Option<Value>`, never by [`Value::Null`]: SQL NULL is a value.
///
/// JSON form (used by `sync-cli inspect --format json` and the server's conflict records):
/// `{"type":"integer","value":42}`, `{"type":"real","value":1.5}`, `{"type":"text","value":"hi"}`,
/// `{"type":"blob","value":"<base64>"}`, `{"type":"null"}`. See `docs/changeset-json.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// An IEEE-754 double. Non-finite values serialize as the strings `"NaN"`, `"inf"`, `"-inf"`.
    Real(#[serde(with = "real_json")] f64),
    /// UTF-8 text.
    Text(String),
    /// Raw bytes (base64 in JSON).
    Blob(#[serde(with = "blob_base64")] Vec<u8>),
}

impl Value {
    /// SQLite's name for the storage class (`NULL`, `INTEGER`, `REAL`, `TEXT`, `BLOB`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Integer(_) => "INTEGER",
            Value::Real(_) => "REAL",
            Value::Text(_) => "TEXT",
            Value::Blob(_) => "BLOB",
        }
    }

    /// Renders the value as an SQL literal (`NULL`, `42`, `1.5`, `'it''s'`, `X'0102'`).
    pub fn to_sql_literal(&self) -> String {
        match self {
            Value::Null => "NULL".to_string(),
            Value::Integer(i) => i.to_string(),
            Value::Real(r) if r.is_finite() => format!("{r:?}"),
            Value::Real(r) if r.is_nan() => "NULL".to_string(),
            Value::Real(r) if *r > 0.0 => "9e999".to_string(),
            Value::Real(_) => "-9e999".to_string(),
            Value::Text(t) => format!("'{}'", t.replace('\'', "''")),
            Value::Blob(b) => {
                let mut s = String::with_capacity(3 + b.len() * 2);
                s.push_str("X'");
                for byte in b {
                    s.push_str(&format!("{byte:02X}"));
                }
                s.push('\'');
                s
            }
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_sql_literal())
    }
}

impl From<rusqlite::types::ValueRef<'_>> for Value {
    /// Converts a borrowed SQLite value. Text that is not valid UTF-8 is converted lossily.
    fn from(v: rusqlite::types::ValueRef<'_>) -> Self {
        use rusqlite::types::ValueRef;
        match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(r) => Value::Real(r),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        }
    }
}

impl From<rusqlite::types::Value> for Value {
    fn from(v: rusqlite::types::Value) -> Self {
        use rusqlite::types::Value as V;
        match v {
            V::Null => Value::Null,
            V::Integer(i) => Value::Integer(i),
            V::Real(r) => Value::Real(r),
            V::Text(t) => Value::Text(t),
            V::Blob(b) => Value::Blob(b),
        }
    }
}

impl From<Value> for rusqlite::types::Value {
    fn from(v: Value) -> Self {
        use rusqlite::types::Value as V;
        match v {
            Value::Null => V::Null,
            Value::Integer(i) => V::Integer(i),
            Value::Real(r) => V::Real(r),
            Value::Text(t) => V::Text(t),
            Value::Blob(b) => V::Blob(b),
        }
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(r) => ValueRef::Real(*r),
            Value::Text(t) => ValueRef::Text(t.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

mod real_json {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else if v.is_nan() {
            s.serialize_str("NaN")
        } else if *v > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Num(f64),
        Str(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Num(n) => Ok(n),
            Repr::Str(s) => match s.as_str() {
                "NaN" => Ok(f64::NAN),
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                other => Err(serde::de::Error::custom(format!("not a real: {other:?}"))),
            },
        }
    }
}

mod blob_base64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// SQLite's sort order across storage classes: NULL < INTEGER/REAL < TEXT < BLOB. Text
/// compares bytewise (BINARY collation).
pub fn sql_cmp(a: &Value, b: &Value) -> Ordering {
    fn class(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Integer(_) | Value::Real(_) => 1,
            Value::Text(_) => 2,
            Value::Blob(_) => 3,
        }
    }
    match (a, b) {
        (Value::Integer(x), Value::Integer(y)) => x.cmp(y),
        (Value::Integer(x), Value::Real(y)) => (*x as f64).total_cmp(y),
        (Value::Real(x), Value::Integer(y)) => x.total_cmp(&(*y as f64)),
        (Value::Real(x), Value::Real(y)) => x.total_cmp(y),
        (Value::Text(x), Value::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Blob(x), Value::Blob(y)) => x.cmp(y),
        _ => class(a).cmp(&class(b)),
    }
}
