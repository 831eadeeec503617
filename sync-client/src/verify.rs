//! `verify`: the local synced state compared with the server's at the same seq — lineage,
//! chain value and content checksum — without changing anything on either side.

use crate::error::{Error, ErrorKind, Result};
use crate::transport::Transport;
use crate::writer::Writer;
use std::path::PathBuf;
use sync_core::client::cycle::synced_sum;
use sync_core::client::state;

/// What [`crate::SyncClient::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// The seq compared at (the local cursor).
    pub seq: i64,
    /// The local synced state's checksum, recomputed from the tables (64 hex digits).
    pub local: String,
    /// The server's checksum at `seq` (64 hex digits).
    pub server: String,
    /// Equal: same history (lineage and chain value) and same content.
    pub equal: bool,
    /// What differs, for people (empty when equal).
    pub difference: String,
}

pub(crate) fn verify(
    writer: &Writer,
    transport: &dyn Transport,
    scratch: PathBuf,
) -> Result<Verification> {
    let (seq, position, local) = writer.run(move |conn| -> Result<_> {
        let synced = state::synced(conn)?;
        let sum = synced_sum(conn, Some(&scratch)).map_err(Error::from)?;
        Ok((state::cursor(conn)?, synced.position, sum))
    })??;
    let tip = transport.position(seq)?;
    let server = tip.sum.ok_or_else(|| {
        Error::new(
            ErrorKind::Internal,
            format!("the server has no checksum at seq {seq} (logged before checksums existed); sync first"),
        )
    })?;
    let difference = match position {
        Some(p) if p.lineage != tip.lineage.0 => format!(
            "the server's history was rewound (lineage {} locally, {} on the server)",
            sync_core::protocol::lineage::Hex64(p.lineage),
            tip.lineage
        ),
        Some(p) if p.chain != tip.chain.0 => {
            format!("the log entry at seq {seq} is not the one this copy integrated")
        }
        _ if local != server => format!(
            "the content differs at seq {seq}: checksum {local} locally, {server} on the server"
        ),
        _ => String::new(),
    };
    Ok(Verification {
        seq,
        local: local.to_string(),
        server: server.to_string(),
        equal: difference.is_empty(),
        difference,
    })
}
