//! JSON Web Tokens from the operator's own identity provider, accepted beside the server's
//! own tokens (`docs/operations.md`, "Bring your own identity provider").
//!
//! A token is told apart cheaply: the server's own tokens start with `sst_`; anything else
//! shaped `HEADER.PAYLOAD.SIGNATURE` goes here. HS256 tokens are checked against the shared
//! secret, RS256/ES256 tokens against the JWKS key their `kid` names — each key verifies
//! exactly one algorithm. `exp` (required), `nbf`, `aud` and `iss` are enforced, with a small
//! leeway for clock skew. Verified tokens are remembered by their SHA-256, never past `exp`.
//!
//! | module | its job |
//! |---|---|
//! | this one | [`Verifier`]: verifying, the cache, [`JwtError`] |
//! | `keys` | the secret and the JWKS file's keys by `kid` |
//! | `claims` | claims → [`Identity`]: user, device, databases with their access |

mod claims;
mod keys;

pub use claims::{Identity, MAX_SUB_BYTES};

use crate::config::{JwtConfig, JwtSecret};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// Remembered verifications are dropped wholesale beyond this many.
const MAX_CACHED: usize = 16_384;

/// Why a JWT is refused, or the keys cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// `exp` has passed (beyond the leeway): `401 token_expired`, get a fresh token.
    #[error("the token expired; get a fresh one")]
    Expired,
    /// Anything else wrong with the token: `401 token_invalid`.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The configured keys are unusable (at startup).
    #[error("{0}")]
    Keys(String),
}

/// The JWT checker of a running server.
pub struct Verifier {
    config: JwtConfig,
    secret: Option<DecodingKey>,
    jwks: Option<Mutex<keys::Jwks>>,
    cache: Mutex<HashMap<[u8; 32], Identity>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

/// True for a string shaped like a JWT (three base64url parts) that is not one of the
/// server's own tokens.
pub fn looks_like_jwt(token: &str) -> bool {
    !token.starts_with(crate::catalog::TOKEN_PREFIX)
        && token.split('.').count() == 3
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn now_secs() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

impl Verifier {
    /// Loads the keys of `config`.
    pub fn new(config: JwtConfig) -> Result<Verifier, JwtError> {
        let secret = match &config.secret {
            JwtSecret::Bytes(b) => Some(
                DecodingKey::from_secret(b)
                    .map_err(|e| JwtError::Keys(format!("the JWT secret: {e}")))?,
            ),
            JwtSecret::None => None,
        };
        let jwks = match &config.jwks_file {
            Some(path) => Some(Mutex::new(keys::Jwks::load(path)?)),
            None => None,
        };
        Ok(Verifier {
            config,
            secret,
            jwks,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Verifies `token` and reads its identity. Blocks only on the JWKS file's re-read.
    pub fn verify(&self, token: &str) -> Result<Identity, JwtError> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = now_secs();
        {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(found) = cache.get(&hash) {
                if now < found.exp {
                    return Ok(found.clone());
                }
                cache.remove(&hash);
            }
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| JwtError::Invalid(format!("unreadable header: {e}")))?;
        let (key, alg) = match header.alg {
            Algorithm::HS256 => match &self.secret {
                Some(k) => (k.clone(), Algorithm::HS256),
                None => return Err(JwtError::Invalid("HS256 tokens are not accepted".into())),
            },
            Algorithm::RS256 | Algorithm::ES256 => {
                let Some(jwks) = &self.jwks else {
                    return Err(JwtError::Invalid(format!(
                        "{:?} tokens are not accepted (no JWKS file)",
                        header.alg
                    )));
                };
                let kid = header
                    .kid
                    .as_deref()
                    .ok_or_else(|| JwtError::Invalid("the token names no \"kid\"".into()))?;
                let (found, reloaded) = jwks.lock().unwrap_or_else(|e| e.into_inner()).find(kid);
                if reloaded {
                    // A key may have been withdrawn: verify everything again.
                    self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
                }
                let k =
                    found.ok_or_else(|| JwtError::Invalid(format!("no key has kid {kid:?}")))?;
                if k.alg != header.alg {
                    return Err(JwtError::Invalid(format!(
                        "key {kid:?} verifies {:?}, the token says {:?}",
                        k.alg, header.alg
                    )));
                }
                (k.key, k.alg)
            }
            other => {
                return Err(JwtError::Invalid(format!(
                    "algorithm {other:?} is not accepted (HS256, RS256, ES256)"
                )));
            }
        };
        let mut validation = Validation::new(alg);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_audience(&[&self.config.audience]);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(map_error)?;
        let identity = claims::identity(
            &data.claims,
            &self.config.grants_claim,
            &self.config.device_claim,
        )?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(hash, identity.clone());
        Ok(identity)
    }
}

fn map_error(e: jsonwebtoken::errors::Error) -> JwtError {
    use jsonwebtoken::errors::ErrorKind as K;
    JwtError::Invalid(match e.kind() {
        K::ExpiredSignature => return JwtError::Expired,
        K::ImmatureSignature => "it is not valid yet (nbf)".into(),
        K::InvalidSignature => "the signature does not verify".into(),
        K::InvalidAudience => "wrong audience (aud)".into(),
        K::InvalidIssuer => "wrong issuer (iss)".into(),
        K::MissingRequiredClaim(c) => format!("the token has no {c:?} claim"),
        K::InvalidAlgorithm => "the algorithm does not match the key".into(),
        other => format!("{other:?}"),
    })
}
