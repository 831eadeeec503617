//! What a sync did ([`CycleReport`]) and why one stopped ([`CycleError`]).

use crate::client::ClientError;
use crate::client::report::TouchedRow;
use crate::protocol::error::ErrorCode;

/// What one sync did.
#[derive(Debug, Clone, Default)]
pub struct CycleReport {
    /// Batches the server processed.
    pub pushed_batches: usize,
    /// Transactions in them.
    pub pushed_transactions: usize,
    /// Transactions moved to the rejected queue (by the server's answers, or by a rebase).
    pub rejected_transactions: usize,
    /// Log entries integrated.
    pub pulled_entries: usize,
    /// Whether the local database was re-based on a snapshot.
    pub bootstrapped: bool,
    /// The schema version the local copy was upgraded to, if it was.
    pub upgraded_to: Option<u32>,
    /// Local conflicts recorded.
    pub new_conflicts: usize,
    /// Conflicts the server reported for this sync's pushes, newly recorded.
    pub server_conflicts: usize,
    /// Whether the synced state was found to differ from the server's (a checksum or an
    /// apply that did not fit) and was repaired from a snapshot.
    pub repaired: bool,
    /// Divergences found while integrating (and repaired by a bootstrap), described.
    pub divergences: Vec<String>,
    /// The cursor at the end.
    pub cursor: i64,
    /// Rows that may have changed (remote changes and re-based pending ones; none listed
    /// past [`crate::client::report::MAX_TOUCHED_ROWS`] per integration).
    pub touched: Vec<TouchedRow>,
    /// Tables with rows that may have changed, sorted, each once.
    pub touched_tables: Vec<String>,
}

/// Why a cycle stopped before it was done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CycleError {
    /// A local step failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The server refused a request in a way the cycle does not recover from; the pump reports
    /// the server's own error.
    #[error("the server refused with {0}")]
    Refused(ErrorCode),
    /// `feed` got an answer to something that was not asked (a pump bug).
    #[error("unexpected answer: {0}")]
    Unexpected(&'static str),
}

impl From<rusqlite::Error> for CycleError {
    fn from(e: rusqlite::Error) -> Self {
        CycleError::Client(ClientError::Sqlite(e))
    }
}
