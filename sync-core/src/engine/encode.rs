//! The writer of SQLite's changeset format: the inverse of [`crate::engine::decode`]. Sessions write
//! changesets in practice; this exists for tools and tests that must build one from decoded
//! [`Change`]s — including ones no session would record (a table in any letter case, a hostile
//! peer's input) — byte for byte as SQLite would lay them out.

use crate::engine::decode::{Change, Op};
use crate::engine::value::Value;

/// Writes `changes` in the changeset format: a table header whenever the table (or its key
/// flags) changes from the previous change, then each change's op, indirect flag and records
/// (DELETE old, INSERT new, UPDATE old + new; `None` fields are "undefined"). The result
/// decodes back to `changes` with [`crate::engine::decode::decode`].
pub fn encode(changes: &[Change]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut table: Option<(&str, &[u8])> = None;
    for c in changes {
        if table != Some((c.table.as_str(), c.pk.as_slice())) {
            out.push(b'T');
            put_varint(&mut out, c.pk.len() as u64);
            out.extend_from_slice(&c.pk);
            out.extend_from_slice(c.table.as_bytes());
            out.push(0);
            table = Some((c.table.as_str(), c.pk.as_slice()));
        }
        out.push(match c.op {
            Op::Insert => 0x12,
            Op::Update => 0x17,
            Op::Delete => 0x09,
        });
        out.push(u8::from(c.indirect));
        for record in [&c.old, &c.new].into_iter().flatten() {
            for field in record {
                put_field(&mut out, field.as_ref());
            }
        }
    }
    out
}

fn put_field(out: &mut Vec<u8>, field: Option<&Value>) {
    match field {
        None => out.push(0),
        Some(Value::Integer(i)) => {
            out.push(1);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Some(Value::Real(r)) => {
            out.push(2);
            out.extend_from_slice(&r.to_bits().to_be_bytes());
        }
        Some(Value::Text(t)) => {
            out.push(3);
            put_varint(out, t.len() as u64);
            out.extend_from_slice(t.as_bytes());
        }
        Some(Value::Blob(b)) => {
            out.push(4);
            put_varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        Some(Value::Null) => out.push(5),
    }
}

/// SQLite's varint: big-endian groups of 7 bits with the high bit set on all but the last;
/// values of 2^56 and above take 9 bytes, the last one carrying 8 bits.
pub fn put_varint(out: &mut Vec<u8>, v: u64) {
    if v >> 56 != 0 {
        let high = v >> 8;
        for i in (0..8).rev() {
            out.push(((high >> (7 * i)) & 0x7f) as u8 | 0x80);
        }
        out.push(v as u8);
        return;
    }
    let mut groups = [0u8; 8];
    let mut n = 0;
    let mut rest = v;
    loop {
        groups[n] = (rest & 0x7f) as u8;
        n += 1;
        rest >>= 7;
        if rest == 0 {
            break;
        }
    }
    for (i, g) in groups[..n].iter().enumerate().rev() {
        out.push(if i > 0 { g | 0x80 } else { *g });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::decode;

    #[test]
    fn varints_match_sqlite_layout_and_round_trip_through_the_decoder() {
        let mut out = Vec::new();
        put_varint(&mut out, 20_000);
        assert_eq!(out, [0x81, 0x9c, 0x20]);
        for v in [(1u64 << 56) - 1, 1 << 56, u64::MAX] {
            let mut bytes = Vec::new();
            put_varint(&mut bytes, v);
            assert_eq!(bytes.len(), if v >> 56 == 0 { 8 } else { 9 }, "{v}");
        }
        // Lengths around each 7-bit boundary decode back to the same blob.
        for len in [0usize, 1, 127, 128, 16_383, 16_384] {
            let change = Change {
                table: "t".into(),
                op: Op::Insert,
                indirect: false,
                pk: vec![1, 0],
                old: None,
                new: Some(vec![
                    Some(Value::Integer(1)),
                    Some(Value::Blob(vec![7; len])),
                ]),
            };
            let bytes = encode(std::slice::from_ref(&change));
            assert_eq!(decode::decode(&bytes).unwrap(), vec![change], "{len}");
        }
    }

    #[test]
    fn encoded_changes_decode_back() {
        let changes = vec![
            Change {
                table: "_SYNC_Outbox".into(),
                op: Op::Insert,
                indirect: false,
                pk: vec![1, 0, 0],
                old: None,
                new: Some(vec![
                    Some(Value::Integer(7)),
                    Some(Value::Blob(vec![1, 2, 3])),
                    Some(Value::Real(1.5)),
                ]),
            },
            Change {
                table: "notes".into(),
                op: Op::Update,
                indirect: true,
                pk: vec![1, 0],
                old: Some(vec![Some(Value::Integer(1)), Some(Value::Null)]),
                new: Some(vec![None, Some(Value::Text("é".into()))]),
            },
            Change {
                table: "notes".into(),
                op: Op::Delete,
                indirect: false,
                pk: vec![1, 0],
                old: Some(vec![Some(Value::Integer(2)), Some(Value::Text("x".into()))]),
                new: None,
            },
        ];
        let bytes = encode(&changes);
        assert_eq!(decode::decode(&bytes).unwrap(), changes);
    }
}
