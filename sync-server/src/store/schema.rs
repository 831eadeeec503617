//! The PostgreSQL schema and its versioned migrations. Each node runs the pending ones at
//! startup, serialised by an advisory lock so that nodes starting together do not race; a
//! store newer than this build is refused (`StoreError::Invalid`).
//!
//! | table | holds |
//! |---|---|
//! | `sync_store_version` | the migrations applied |
//! | `sync_frames` | per replicated file (0: the catalog, else a database id) its history: version → the patchset of one write, or a marker that an image replaced the file |
//! | `sync_images` / `sync_image_parts` | whole copies of a file at a version, in 1 MiB parts: where a new or restarted node starts |
//! | `sync_entries` | one row per log entry: (database, seq) is unique, so a stale append is refused |
//! | `sync_batches` | idempotency: (database, device, batch id) → seq, unique |
//! | `sync_uploads` / `sync_upload_parts` | multi-part uploads in progress: (database, device, batch id) → declared total, bytes arrived, last write; the bytes in pieces by offset |

/// The migrations, in order; version N is `MIGRATIONS[N - 1]`.
pub const MIGRATIONS: &[&str] = &[
    // 1: frames, images, the log index, idempotency.
    "CREATE TABLE sync_frames (
         file    bigint   NOT NULL,
         version bigint   NOT NULL,
         kind    smallint NOT NULL,
         body    bytea    NOT NULL,
         at      timestamptz NOT NULL DEFAULT now(),
         PRIMARY KEY (file, version)
     );
     CREATE TABLE sync_images (
         file    bigint NOT NULL,
         version bigint NOT NULL,
         parts   integer NOT NULL,
         len     bigint NOT NULL,
         at      timestamptz NOT NULL DEFAULT now(),
         PRIMARY KEY (file, version)
     );
     CREATE TABLE sync_image_parts (
         file    bigint  NOT NULL,
         version bigint  NOT NULL,
         part    integer NOT NULL,
         bytes   bytea   NOT NULL,
         PRIMARY KEY (file, version, part)
     );
     CREATE TABLE sync_entries (
         database bigint NOT NULL,
         seq      bigint NOT NULL,
         version  bigint NOT NULL,
         device   text   NOT NULL,
         batch_id text   NOT NULL,
         PRIMARY KEY (database, seq)
     );
     CREATE TABLE sync_batches (
         database bigint NOT NULL,
         device   text   NOT NULL,
         batch_id text   NOT NULL,
         seq      bigint NOT NULL,
         PRIMARY KEY (database, device, batch_id)
     );",
    // 2: multi-part uploads in progress, so that any node takes any part.
    "CREATE TABLE sync_uploads (
         database bigint NOT NULL,
         device   text   NOT NULL,
         batch_id text   NOT NULL,
         total    bigint NOT NULL,
         received bigint NOT NULL DEFAULT 0,
         created  timestamptz NOT NULL DEFAULT now(),
         touched  timestamptz NOT NULL DEFAULT now(),
         PRIMARY KEY (database, device, batch_id)
     );
     CREATE INDEX sync_uploads_touched ON sync_uploads (touched);
     CREATE TABLE sync_upload_parts (
         database    bigint NOT NULL,
         device      text   NOT NULL,
         batch_id    text   NOT NULL,
         byte_offset bigint NOT NULL,
         bytes       bytea  NOT NULL,
         PRIMARY KEY (database, device, batch_id, byte_offset),
         FOREIGN KEY (database, device, batch_id) REFERENCES sync_uploads ON DELETE CASCADE
     );",
];

/// The advisory lock key migrations hold (an arbitrary constant: "sync" in ASCII).
pub const MIGRATION_LOCK: i64 = 0x7379_6e63;
