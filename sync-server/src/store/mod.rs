//! The PostgreSQL store (`serve --store postgres://…`): what must survive lives in PostgreSQL,
//! so several nodes can serve the same databases and any node can be killed, replaced or
//! added. Each node keeps only caches — the catalog and each database as a local SQLite copy at
//! some version of its history in the store, caught up before every use.
//!
//! | module | its job |
//! |---|---|
//! | `pg` | [`PgStore`]: the bounded pool, the store's runtime, every statement |
//! | `images` | whole-file images: stored in parts, read back in parts |
//! | `schema` | the store's own tables and their versioned migrations |
//! | `replica` | [`Replica`]: a local SQLite copy of one file, caught up from and written through the store |
//! | `uploads` | multi-part uploads in progress: their rows and parts, the budget across nodes |
//! | `listen` | LISTEN/NOTIFY: frames other nodes appended, as events |
//! | `error` | [`StoreError`] |
//!
//! Without `--store` none of this runs: the data directory is the store (one node).

mod error;
mod images;
pub mod listen;
mod pg;
mod replica;
mod schema;
mod uploads;

pub use error::StoreError;
pub use pg::{
    Appended, EntryKey, Frame, FrameKind, Head, IMAGE_PART, PgStore, STATEMENT_TIMEOUT, WAIT,
    may_block,
};
pub use replica::{
    CATALOG_FILE, CHECKPOINT_EVERY, LOCAL_TABLE, MAX_ATTEMPTS, Replica, local_version,
};
pub use schema::MIGRATIONS;
pub use uploads::{PartRefused, StartRules, UploadKey, UploadRow};
