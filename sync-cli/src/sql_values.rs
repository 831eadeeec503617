//! SQL values at the command line: parameters of `exec` and `query` (`42`, `1.5`, `NULL`,
//! `hello`, or typed: `int:42`, `real:1`, `text:42`, `blob:00ff`, `null:`), and result rows in
//! text and JSON.

use serde::ser::{Serialize, SerializeMap, Serializer};
use sync_core::engine::value::Value;

/// Parses one parameter.
///
/// Untyped: `NULL` (or `null`) is NULL; an integer literal that fits 64 bits is INTEGER; a
/// decimal literal with a `.` or an exponent (`1.5`, `-2e3`) is REAL; anything else is TEXT,
/// as written. Typed, `TYPE:VALUE`: `int:`, `real:`, `text:`, `blob:` (hexadecimal digits,
/// even count) and `null:` (nothing after the colon) — `text:` keeps a value like `007`,
/// `NULL` or `int:5` as TEXT.
pub fn parse_param(arg: &str) -> Result<Value, String> {
    if let Some((prefix, rest)) = arg.split_once(':') {
        match prefix {
            "int" => {
                return rest
                    .trim()
                    .parse::<i64>()
                    .map(Value::Integer)
                    .map_err(|_| format!("parameter {arg:?}: not a 64-bit integer"));
            }
            "real" => {
                return rest
                    .trim()
                    .parse::<f64>()
                    .map(Value::Real)
                    .map_err(|_| format!("parameter {arg:?}: not a number"));
            }
            "text" => return Ok(Value::Text(rest.to_string())),
            "blob" => {
                return decode_hex(rest).map(Value::Blob).ok_or_else(|| {
                    format!("parameter {arg:?}: a blob is written as hex digits, two per byte")
                });
            }
            "null" if rest.is_empty() => return Ok(Value::Null),
            "null" => return Err(format!("parameter {arg:?}: null: takes no value")),
            _ => {}
        }
    }
    if arg == "NULL" || arg == "null" {
        return Ok(Value::Null);
    }
    if is_integer_literal(arg)
        && let Ok(i) = arg.parse::<i64>()
    {
        return Ok(Value::Integer(i));
    }
    if is_real_literal(arg)
        && let Ok(r) = arg.parse::<f64>()
    {
        return Ok(Value::Real(r));
    }
    Ok(Value::Text(arg.to_string()))
}

fn is_integer_literal(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `[+-]digits[.digits][e[+-]digits]` or `[+-].digits…`, with a `.` or an exponent; no
/// `inf`/`nan` words (those stay TEXT unless written `real:inf`).
fn is_real_literal(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(int)
        && frac.is_none_or(digits)
        && !(int.is_empty() && frac.is_none_or(str::is_empty));
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok && (frac.is_some() || exponent.is_some())
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Binds `params` to `stmt` by position (`?1`, `?2`, … and named parameters in order).
pub fn bind(stmt: &mut rusqlite::Statement<'_>, params: &[Value]) -> rusqlite::Result<()> {
    let expected = stmt.parameter_count();
    if params.len() != expected {
        return Err(rusqlite::Error::InvalidParameterCount(
            params.len(),
            expected,
        ));
    }
    for (i, value) in params.iter().enumerate() {
        stmt.raw_bind_parameter(i + 1, rusqlite::types::Value::from(value.clone()))?;
    }
    Ok(())
}

/// Column names of a result, each made unique for JSON objects: a name seen before gets
/// `:N` appended, N its 1-based column position (`SELECT 1 AS a, 2 AS a` → `a`, `a:2`).
pub fn unique_names(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if out.contains(name) {
            out.push(format!("{name}:{}", i + 1));
        } else {
            out.push(name.clone());
        }
    }
    out
}

/// One result row as a JSON object: column name → value in the typed form of
/// `docs/changeset-json.md`, keys in column order.
pub struct RowJson<'a> {
    /// Unique column names.
    pub names: &'a [String],
    /// The row's values.
    pub values: &'a [Value],
}

impl Serialize for RowJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.names.len()))?;
        for (name, value) in self.names.iter().zip(self.values) {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untyped_parameters_take_the_obvious_type() {
        assert_eq!(parse_param("42").unwrap(), Value::Integer(42));
        assert_eq!(parse_param("-7").unwrap(), Value::Integer(-7));
        assert_eq!(parse_param("1.5").unwrap(), Value::Real(1.5));
        assert_eq!(parse_param("-2e3").unwrap(), Value::Real(-2000.0));
        assert_eq!(parse_param(".5").unwrap(), Value::Real(0.5));
        assert_eq!(parse_param("NULL").unwrap(), Value::Null);
        assert_eq!(parse_param("hello").unwrap(), Value::Text("hello".into()));
        assert_eq!(parse_param("inf").unwrap(), Value::Text("inf".into()));
        assert_eq!(parse_param("1e").unwrap(), Value::Text("1e".into()));
        assert_eq!(parse_param(".").unwrap(), Value::Text(".".into()));
        assert_eq!(parse_param("").unwrap(), Value::Text(String::new()));
        assert_eq!(
            parse_param("99999999999999999999").unwrap(),
            Value::Text("99999999999999999999".into())
        );
        assert_eq!(
            parse_param("http://x").unwrap(),
            Value::Text("http://x".into())
        );
    }

    #[test]
    fn typed_parameters_say_what_they_are() {
        assert_eq!(parse_param("int:5").unwrap(), Value::Integer(5));
        assert_eq!(parse_param("real:1").unwrap(), Value::Real(1.0));
        assert_eq!(parse_param("text:007").unwrap(), Value::Text("007".into()));
        assert_eq!(
            parse_param("text:NULL").unwrap(),
            Value::Text("NULL".into())
        );
        assert_eq!(parse_param("text:").unwrap(), Value::Text(String::new()));
        assert_eq!(
            parse_param("blob:00FF10").unwrap(),
            Value::Blob(vec![0, 255, 16])
        );
        assert_eq!(parse_param("blob:").unwrap(), Value::Blob(vec![]));
        assert_eq!(parse_param("null:").unwrap(), Value::Null);
        assert!(parse_param("int:x").is_err());
        assert!(parse_param("blob:abc").is_err());
        assert!(parse_param("blob:zz").is_err());
        assert!(parse_param("null:1").is_err());
    }

    #[test]
    fn repeated_column_names_are_made_unique() {
        let names = ["a", "b", "a"].map(String::from);
        assert_eq!(unique_names(&names), ["a", "b", "a:3"]);
    }
}
