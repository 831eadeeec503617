//! Device tokens: issued once, stored only as their SHA-256 hash and a shown prefix, revoked by
//! prefix or device; and what a token may do with a database.

use super::{CatalogError, SHOWN_CHARS, TOKEN_PREFIX, access_column, check_name, now_ms, user_id};
use base64::Engine;
use rand::Rng;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use sync_core::engine::tx::Tx;
use sync_core::protocol::info::Access;

/// A freshly issued token. The secret is shown once and never stored.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The bearer token (`sst_` + 43 characters: 256 random bits, base64url).
    pub token: String,
    /// The first characters, kept in the catalog to list and revoke the token.
    pub shown: String,
}

/// The SHA-256 of a token: what the catalog stores and looks up.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Issues a new token for `user`'s device `device`, creating the device if needed.
pub fn issue_token(
    conn: &Connection,
    user: &str,
    device: &str,
) -> Result<IssuedToken, CatalogError> {
    check_name("device", device)?;
    let tx = Tx::begin(conn)?;
    let uid = user_id(conn, user)?;
    let existing: Option<(i64, i64, String)> = conn
        .query_row(
            "SELECT d.id, d.user_id, u.name FROM devices d JOIN users u ON u.id = d.user_id
             WHERE d.name = ?1",
            [device],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let device_id = match existing {
        Some((id, owner, _)) if owner == uid => id,
        Some((_, _, owner)) => {
            return Err(CatalogError::DeviceOwnedByOther {
                device: device.to_string(),
                owner,
                user: user.to_string(),
            });
        }
        None => {
            conn.execute(
                "INSERT INTO devices(user_id, name, created_ms) VALUES (?1, ?2, ?3)",
                params![uid, device, now_ms()],
            )?;
            conn.last_insert_rowid()
        }
    };
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let shown = token[..SHOWN_CHARS].to_string();
    conn.execute(
        "INSERT INTO tokens(hash, shown, device_id, created_ms) VALUES (?1, ?2, ?3, ?4)",
        params![token_hash(&token).as_slice(), shown, device_id, now_ms()],
    )?;
    tx.commit()?;
    Ok(IssuedToken { token, shown })
}

/// Which tokens to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSelector {
    /// A whole token, or the start of one (at least the shown part, `sst_` + 8 characters,
    /// or any shorter start that matches exactly one active token).
    TokenOrPrefix(String),
    /// Every active token of a device.
    Device(String),
}

/// Revokes tokens; returns how many were active and are now revoked. Revocation takes effect
/// on the running server's next request (it checks the catalog's change counter per request).
pub fn revoke_tokens(conn: &Connection, selector: &TokenSelector) -> Result<usize, CatalogError> {
    let now = now_ms();
    let tx = Tx::begin(conn)?;
    let n = match selector {
        TokenSelector::Device(device) => {
            let id: i64 = conn
                .query_row("SELECT id FROM devices WHERE name = ?1", [device], |r| {
                    r.get(0)
                })
                .optional()?
                .ok_or_else(|| CatalogError::NotFound {
                    what: "device",
                    name: device.clone(),
                })?;
            conn.execute(
                "UPDATE tokens SET revoked_ms = ?1 WHERE device_id = ?2 AND revoked_ms IS NULL",
                params![now, id],
            )?
        }
        TokenSelector::TokenOrPrefix(t) => {
            let by_hash = conn.execute(
                "UPDATE tokens SET revoked_ms = ?1 WHERE hash = ?2 AND revoked_ms IS NULL",
                params![now, token_hash(t).as_slice()],
            )?;
            if by_hash > 0 {
                by_hash
            } else {
                // Only the shown part is stored in the clear: match on it.
                let start: String = t.chars().take(SHOWN_CHARS).collect();
                let pattern = format!("{}%", start.replace('%', "").replace('_', "\\_"));
                let hashes: Vec<Vec<u8>> = conn
                    .prepare(
                        "SELECT hash FROM tokens WHERE shown LIKE ?1 ESCAPE '\\' AND revoked_ms IS NULL",
                    )?
                    .query_map([pattern], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                match hashes.len() {
                    0 => {
                        return Err(CatalogError::NotFound {
                            what: "active token",
                            name: t.clone(),
                        });
                    }
                    1 => conn.execute(
                        "UPDATE tokens SET revoked_ms = ?1 WHERE hash = ?2",
                        params![now, hashes[0]],
                    )?,
                    count => {
                        return Err(CatalogError::Ambiguous {
                            prefix: t.clone(),
                            count,
                        });
                    }
                }
            }
        }
    };
    tx.commit()?;
    Ok(n)
}

/// A token as `token list` shows it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenRow {
    /// The first characters of the token.
    pub shown: String,
    /// Its user.
    pub user: String,
    /// Its device.
    pub device: String,
    /// When it was issued (ms since the epoch).
    pub created_ms: i64,
    /// When it was revoked, if it was.
    pub revoked_ms: Option<i64>,
}

/// Every token, newest first.
pub fn list_tokens(conn: &Connection) -> Result<Vec<TokenRow>, CatalogError> {
    let mut stmt = conn.prepare(
        "SELECT t.shown, u.name, d.name, t.created_ms, t.revoked_ms FROM tokens t
         JOIN devices d ON d.id = t.device_id JOIN users u ON u.id = d.user_id
         ORDER BY t.created_ms DESC, t.shown",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(TokenRow {
                shown: r.get(0)?,
                user: r.get(1)?,
                device: r.get(2)?,
                created_ms: r.get(3)?,
                revoked_ms: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// What a token may do with one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The database's internal id (its file name).
    pub database_id: i64,
    /// Read-write or read-only.
    pub access: Access,
    /// The token's device: the origin its pushes are logged under.
    pub device: String,
}

/// The answer to "may this token use this database?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// Unknown or revoked token.
    BadToken,
    /// A valid token whose user has no grant on the database, or no such database (the two
    /// are not told apart, so names do not leak).
    NoGrant,
    /// Allowed.
    Granted(Grant),
}

/// Looks up a token (by hash) and its user's grant on `database`.
pub fn authorize(
    conn: &Connection,
    hash: &[u8; 32],
    database: &str,
) -> Result<Authorization, CatalogError> {
    let row: Option<(String, Option<i64>, Option<Access>)> = conn
        .prepare_cached(
            "SELECT d.name, db.id, g.access
             FROM tokens t
             JOIN devices d ON d.id = t.device_id
             LEFT JOIN databases db ON db.name = ?2
             LEFT JOIN grants g ON g.database_id = db.id AND g.user_id = d.user_id
             WHERE t.hash = ?1 AND t.revoked_ms IS NULL",
        )?
        .query_row(params![hash.as_slice(), database], |r| {
            let access = match r.get::<_, Option<String>>(2)? {
                Some(_) => Some(access_column(r, 2)?),
                None => None,
            };
            Ok((r.get(0)?, r.get(1)?, access))
        })
        .optional()?;
    Ok(match row {
        None => Authorization::BadToken,
        Some((device, Some(database_id), Some(access))) => Authorization::Granted(Grant {
            database_id,
            access,
            device,
        }),
        Some(_) => Authorization::NoGrant,
    })
}
