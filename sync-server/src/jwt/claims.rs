//! From a verified token's claims to who may do what: the user (`sub`), the device (a claim,
//! or the `Sync-Device` header), and the databases with their access (the grants claim,
//! `{"databases": {"notes": "rw", "shared": "ro"}}`).

use super::JwtError;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use sync_core::protocol::info::Access;

/// The longest `sub` accepted, in bytes: the device name a push is logged under
/// (`jwt:SUB:DEVICE`) must fit the log's 255 bytes.
pub const MAX_SUB_BYTES: usize = 180;

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user (`sub`).
    pub user: String,
    /// The device named by the token, if it names one.
    pub device: Option<String>,
    /// The databases granted, by name.
    pub databases: BTreeMap<String, Access>,
    /// `exp`, seconds since the epoch.
    pub exp: u64,
}

impl Identity {
    /// The device name this identity's requests act as, given the request's `Sync-Device`
    /// header: `jwt:SUB:DEVICE`, so it can never be the name of a device of the server's own
    /// tokens (`:` is not allowed there) nor of another user's device.
    pub fn device_name(&self, header: Option<&str>) -> Result<String, JwtError> {
        let device = match (&self.device, header) {
            (Some(d), _) => d.as_str(),
            (None, Some(h)) => h,
            (None, None) => {
                return Err(JwtError::Invalid(
                    "the token names no device: add the device claim, or send a Sync-Device header"
                        .into(),
                ));
            }
        };
        if !crate::catalog::valid_name(device) {
            return Err(JwtError::Invalid(format!(
                "device name {device:?}: 1-63 characters of a-z, 0-9, '-' and '_'"
            )));
        }
        Ok(format!("jwt:{}:{device}", self.user))
    }
}

/// Reads the identity out of verified `claims`.
pub fn identity(
    claims: &Map<String, Value>,
    grants_claim: &str,
    device_claim: &str,
) -> Result<Identity, JwtError> {
    let invalid = |m: String| Err(JwtError::Invalid(m));
    let user = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return invalid("the token has no \"sub\" (user) claim".into()),
    };
    if user.len() > MAX_SUB_BYTES || user.chars().any(char::is_control) {
        return invalid(format!(
            "\"sub\" must be at most {MAX_SUB_BYTES} bytes without control characters"
        ));
    }
    let exp = match claims.get("exp").and_then(Value::as_u64) {
        Some(e) => e,
        None => return invalid("the token has no numeric \"exp\" claim".into()),
    };
    let device = match claims.get(device_claim) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return invalid(format!("claim {device_claim:?} must be a string")),
    };
    let mut databases = BTreeMap::new();
    if let Some(grants) = claims.get(grants_claim) {
        let Some(map) = grants.get("databases").and_then(Value::as_object) else {
            return invalid(format!(
                "claim {grants_claim:?} must be {{\"databases\": {{\"NAME\": \"rw\" or \"ro\"}}}}"
            ));
        };
        for (name, access) in map {
            if !sync_core::protocol::valid_database_name(name) {
                return invalid(format!(
                    "claim {grants_claim:?} names {name:?}, which is not a database name \
                     (no wildcards: every database is granted by name)"
                ));
            }
            let access = match access.as_str() {
                Some("rw") => Access::ReadWrite,
                Some("ro") => Access::ReadOnly,
                _ => {
                    return invalid(format!(
                        "claim {grants_claim:?}: the access to {name:?} must be \"rw\" or \"ro\""
                    ));
                }
            };
            databases.insert(name.clone(), access);
        }
    }
    Ok(Identity {
        user,
        device,
        databases,
        exp,
    })
}
