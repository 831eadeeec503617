//! The verification keys: the HS256 secret, and the RS256/ES256 public keys of a JWKS file,
//! by `kid`. The JWKS file is re-read when a token names a `kid` it does not hold and the
//! file's modification time changed (an identity provider rotating its keys), at most once
//! a second.

use super::JwtError;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// A key and the one algorithm it verifies.
#[derive(Clone)]
pub struct Key {
    /// The key.
    pub key: DecodingKey,
    /// Its algorithm: a token must name exactly this one (no algorithm confusion).
    pub alg: Algorithm,
}

/// The keys of a JWKS file, as last read.
pub struct Jwks {
    path: PathBuf,
    modified: Option<SystemTime>,
    checked: Instant,
    keys: HashMap<String, Key>,
}

impl Jwks {
    /// Reads `path`; a file that cannot be read or holds no usable key is an error.
    pub fn load(path: &Path) -> Result<Jwks, JwtError> {
        let (keys, modified) = read(path)?;
        Ok(Jwks {
            path: path.to_path_buf(),
            modified,
            checked: Instant::now(),
            keys,
        })
    }

    /// The key named `kid`, re-reading the file first if it lacks one and changed. True in
    /// the second place when the keys were re-read (cached verifications are then stale).
    pub fn find(&mut self, kid: &str) -> (Option<Key>, bool) {
        if let Some(k) = self.keys.get(kid) {
            return (Some(k.clone()), false);
        }
        if self.checked.elapsed() < Duration::from_secs(1) {
            return (None, false);
        }
        self.checked = Instant::now();
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if modified == self.modified {
            return (None, false);
        }
        match read(&self.path) {
            Ok((keys, modified)) => {
                tracing::info!(path = %self.path.display(), keys = keys.len(), "JWKS file re-read");
                self.keys = keys;
                self.modified = modified;
                (self.keys.get(kid).cloned(), true)
            }
            Err(e) => {
                tracing::warn!(error = %e, "the changed JWKS file is unusable; keeping the old keys");
                (None, false)
            }
        }
    }
}

type Keys = (HashMap<String, Key>, Option<SystemTime>);

fn read(path: &Path) -> Result<Keys, JwtError> {
    let bad = |m: String| JwtError::Keys(format!("JWKS file {}: {m}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let set: JwkSet = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            return Err(bad("every key needs a \"kid\"".into()));
        };
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => {
                return Err(bad(format!(
                    "key {kid:?}: only RSA (RS256) and P-256 (ES256) keys are supported"
                )));
            }
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(format!("key {kid:?}: {e}")))?;
        if keys.insert(kid.clone(), Key { key, alg }).is_some() {
            return Err(bad(format!("two keys have kid {kid:?}")));
        }
    }
    if keys.is_empty() {
        return Err(bad("it holds no key".into()));
    }
    Ok((keys, modified))
}
