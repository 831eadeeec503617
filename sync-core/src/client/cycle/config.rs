//! The cycle's limits.

use crate::protocol::pull::{DEFAULT_LIMIT, DEFAULT_MAX_BYTES};
use std::path::PathBuf;

/// The cycle's limits.
#[derive(Debug, Clone)]
pub struct CycleConfig {
    /// About the most bytes of pending changesets in one push.
    pub push_max_bytes: usize,
    /// Entries asked for per pull page.
    pub pull_limit: usize,
    /// Bytes asked for per pull page.
    pub pull_max_bytes: usize,
    /// Pages are integrated together, in one local transaction, up to about this many bytes.
    pub integrate_budget: usize,
    /// Push-and-pull rounds in one sync.
    pub max_rounds: u32,
    /// Bootstraps in one round.
    pub max_bootstraps: u32,
    /// The server's request-body limit: a batch larger than this is uploaded in parts of this
    /// size.
    pub max_body_bytes: usize,
    /// Bytes asked for per range of a large effect.
    pub effect_part_bytes: u64,
    /// Where large transactions and effects wait in unlinked files (`None`: in memory).
    pub scratch_dir: Option<PathBuf>,
    /// Recompute the synced state's checksum from the tables once in this sync (see
    /// docs/design.md, invariant 9): the pump asks for it on its first sync and whenever
    /// another connection wrote the file.
    pub full_check: bool,
    /// The local database's encryption key: snapshots are stored encrypted with it.
    pub key: Option<crate::engine::cipher::EncryptionKey>,
}

impl Default for CycleConfig {
    fn default() -> Self {
        CycleConfig {
            push_max_bytes: 1 << 20,
            pull_limit: DEFAULT_LIMIT,
            pull_max_bytes: DEFAULT_MAX_BYTES,
            integrate_budget: 16 << 20,
            max_rounds: 4,
            max_bootstraps: 2,
            max_body_bytes: 8 << 20,
            effect_part_bytes: 8 << 20,
            scratch_dir: None,
            full_check: false,
            key: None,
        }
    }
}
