//! # sync-core
//!
//! The heart of session-sync, with no network and no async runtime: the changeset engine, the
//! wire protocol, and the protocol steps of both sides. The server and the client crates add
//! storage, threads and transport around it.
//!
//! Three layers; each uses only the layers below it:
//!
//! | layer | modules | its job |
//! |---|---|---|
//! | sides | [`server`], [`client`] | the protocol steps over one SQLite connection: the server's push, pull, snapshot, leases, compaction; the client's batching, settling, rebase, bootstrap and the sans-IO sync [`client::cycle`] |
//! | wire | [`protocol`] | one message family per file (push, pull, snapshot, rowid, conflicts, events, info, error) and the route paths: versioned wire types, separate from engine and storage types |
//! | engine | [`engine`] | changesets: decode, encode, invert, concat, apply with policies, capture, outbox, schema checks, diff, spools |
//!
//! [`names`] holds the macro that gives an enum's variants their one name on the wire and in
//! storage.

#![warn(missing_docs)]

pub mod names;

pub mod client;
pub mod engine;
pub mod protocol;
pub mod server;
