//! The wire protocol, shared by server and client: one message family per file, request and
//! response (and their encodings) side by side. No I/O here; the server and the client move
//! these over HTTP. Wire types are versioned and separate from the engine's and from storage:
//! each converts from the engine type it carries. The written specification is
//! `docs/protocol.md`.
//!
//! | module | family |
//! |---|---|
//! | [`routes`] | every route's path, for the router, the client and the metrics |
//! | [`error`] | the JSON error envelope and its stable codes |
//! | [`push`] | `POST …/push`: headers, the answer with every transaction's outcome |
//! | [`batch`] | the push body: an ordered list of transactions, each its own changeset |
//! | [`upload`] | large transactions: batch bodies uploaded in parts, large effects fetched in ranges |
//! | [`pull`] | `GET …/pull`: the query and the binary log page format |
//! | [`snapshot`] | `GET …/snapshot`: headers and the marker table inside the file |
//! | [`events`] | `GET …/events`: the server-sent `head` event |
//! | [`lineage`] | lineage ids, chain values and checksums: which history a position is in |
//! | [`info`] | `GET …/{db}`: database metadata and access |
//! | [`migrations`] | `GET …/migrations`: the app schema's scripts after a version, with where each was applied |
//! | [`rowid`] | `POST …/rowid-ranges` |
//! | [`conflicts`] | `GET …/conflicts`, and the conflict record push answers carry |

pub mod batch;
pub mod conflicts;
pub mod error;
pub mod events;
pub mod info;
pub mod lineage;
pub mod migrations;
pub mod pull;
pub mod push;
pub mod routes;
pub mod rowid;
pub mod snapshot;
pub mod upload;

/// Version of the protocol, in the URL prefix (`/v1`) and in every JSON envelope (`"v": 1`).
pub const VERSION: u32 = 1;

/// Header: the schema version the client's database has (push), or the snapshot's; on pull
/// answers, the server database's (a device behind learns it there and upgrades).
pub const HEADER_SCHEMA_VERSION: &str = "sync-schema-version";

/// The header a client names its local copy with (a random id made when the copy was): the
/// device of a JWT that carries no device claim.
pub const HEADER_DEVICE: &str = "sync-device";

/// Checks a database name from a URL: 1–63 characters, lowercase ASCII letters, digits, `-`
/// and `_`, starting with a letter or digit. Names never become paths on disk (the server
/// maps them to internal ids), but a strict alphabet keeps logs, metrics and errors sane.
pub fn valid_database_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_')
}

/// Checks a batch id: 1–64 characters of `[A-Za-z0-9_-]`.
pub fn valid_batch_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names() {
        for ok in ["demo", "a", "team-1", "x_y", "0abc"] {
            assert!(valid_database_name(ok), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in [
            "",
            "../x",
            "..",
            "%2e%2e",
            "a/b",
            "a\0b",
            "Demo",
            "-x",
            "_x",
            "a b",
            long.as_str(),
            "é",
        ] {
            assert!(!valid_database_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn batch_ids() {
        assert!(valid_batch_id("0f3a-B_9"));
        assert!(!valid_batch_id(""));
        assert!(!valid_batch_id(&"a".repeat(65)));
        assert!(!valid_batch_id("a b"));
    }
}
