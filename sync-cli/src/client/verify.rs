//! `sync-cli verify`: the local synced state against the server's.

use super::{client_error, open};
use crate::changeset_cmds::Outcome;
use crate::error::CliError;
use crate::output::{Format, Stdout};
use std::path::PathBuf;

/// Compare DB's synced state with the server's: same history, same content.
///
/// Recomputes the content checksum of the synced state (the app tables with pending
/// transactions undone, inside a transaction that is rolled back) and compares it, with the
/// cursor's lineage and chain value, to the server's at the same seq. Changes nothing on
/// either side: the next `sync` repairs a difference (it re-bases the copy on a snapshot,
/// keeping pending transactions). JSON: `{"seq","local","server","equal","difference"}`.
///
/// Exit status: 0 equal, 1 different, 2 error.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The local database.
    #[arg(value_name = "DB")]
    db: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Runs `verify`.
pub fn verify(args: &VerifyArgs) -> Result<Outcome, CliError> {
    let client = open(&args.db, Vec::new())?;
    let result = client.verify();
    client.close();
    let v = result.map_err(|e| client_error(&args.db, e))?;
    let mut out = Stdout::new();
    match args.format {
        Format::Text if v.equal => {
            out.line(&format!("equal at seq {}: checksum {}", v.seq, v.local))?
        }
        Format::Text => out.line(&format!("different: {}", v.difference))?,
        Format::Json => out.json(&serde_json::json!({
            "seq": v.seq,
            "local": v.local,
            "server": v.server,
            "equal": v.equal,
            "difference": v.difference,
        }))?,
    }
    out.finish()?;
    Ok(if v.equal {
        Outcome::Clean
    } else {
        Outcome::Differences
    })
}
