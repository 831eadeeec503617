//! The load's pushes: changesets inserting notes into the demo schema, encoded by hand so
//! that the load generator spends its CPU on HTTP, not on SQLite.

/// A one-table changeset inserting `rows` notes starting at `id`, encoded by hand (SQLite's
/// changeset format) so that the load generator spends its CPU on HTTP, not on SQLite.
pub(crate) fn insert_notes(id: i64, rows: usize, stamp: i64) -> Vec<u8> {
    fn text(out: &mut Vec<u8>, s: &str) {
        assert!(s.len() < 128, "one-byte varint lengths only");
        out.push(3);
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
    fn int(out: &mut Vec<u8>, v: i64) {
        out.push(1);
        out.extend_from_slice(&v.to_be_bytes());
    }
    let mut out = Vec::with_capacity(16 + rows * 64);
    out.extend_from_slice(b"T\x04\x01\x00\x00\x00notes\x00");
    for r in 0..rows {
        out.extend_from_slice(&[0x12, 0]);
        int(&mut out, id + r as i64);
        text(&mut out, "load test note");
        text(&mut out, "a small body of text, as a note app would push");
        int(&mut out, stamp);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn hand_encoded_changesets_are_valid() {
        let cs = sync_core::engine::changeset::Changeset::from_bytes(insert_notes(5, 3, 1));
        let summary = cs.validate().unwrap();
        assert_eq!(summary.changes(), 3);
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&sync_server::migrations::AppSchema::embedded().migrations()[0].sql)
            .unwrap();
        sync_core::engine::apply::apply(
            &conn,
            &cs,
            &sync_core::engine::apply::ApplyOptions::default(),
        )
        .unwrap();
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM notes WHERE id BETWEEN 5 AND 7",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 3);
    }
}
