//! The JWT settings (`docs/operations.md`, "Bring your own identity provider"): flags,
//! `SYNC_JWT_*` variables and the `[jwt]` table of the TOML file, merged like every other
//! setting (flags > env > file). The HS256 secret itself is read from a file
//! (`--jwt-secret-file`) or from `SYNC_JWT_SECRET`, never from a flag (command lines are
//! visible to every local user).

use super::error::ConfigError;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable that may hold the HS256 secret itself.
pub const SECRET_ENV: &str = "SYNC_JWT_SECRET";

/// JWT flags of `serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct JwtArgs {
    /// File holding the HS256 shared secret (its bytes, a trailing newline dropped); or set
    /// SYNC_JWT_SECRET to the secret. Enables JWTs signed with it.
    #[arg(long, env = "SYNC_JWT_SECRET_FILE", value_name = "PATH")]
    pub jwt_secret_file: Option<PathBuf>,
    /// JWKS file (JSON `{"keys": [...]}`) of the RS256/ES256 public keys; the token's `kid`
    /// picks the key. Re-read when a token names a `kid` it lacks and the file changed.
    #[arg(long, env = "SYNC_JWT_JWKS_FILE", value_name = "PATH")]
    pub jwt_jwks_file: Option<PathBuf>,
    /// Required `aud` of JWTs (required when JWTs are enabled).
    #[arg(long, env = "SYNC_JWT_AUDIENCE", value_name = "AUD")]
    pub jwt_audience: Option<String>,
    /// Required `iss` of JWTs (required when JWTs are enabled).
    #[arg(long, env = "SYNC_JWT_ISSUER", value_name = "ISS")]
    pub jwt_issuer: Option<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf` [default: 30].
    #[arg(long, env = "SYNC_JWT_LEEWAY_SECS", value_name = "SECS")]
    pub jwt_leeway_secs: Option<u64>,
    /// Claim holding the grants, `{"databases": {"NAME": "rw"|"ro"}}` [default: sync].
    #[arg(long, env = "SYNC_JWT_GRANTS_CLAIM", value_name = "NAME")]
    pub jwt_grants_claim: Option<String>,
    /// Claim naming the device; without it the `Sync-Device` request header does
    /// [default: device].
    #[arg(long, env = "SYNC_JWT_DEVICE_CLAIM", value_name = "NAME")]
    pub jwt_device_claim: Option<String>,
}

impl JwtArgs {
    /// These flags, with unset ones taken from `fallback`.
    pub fn or(self, fallback: JwtArgs) -> JwtArgs {
        JwtArgs {
            jwt_secret_file: self.jwt_secret_file.or(fallback.jwt_secret_file),
            jwt_jwks_file: self.jwt_jwks_file.or(fallback.jwt_jwks_file),
            jwt_audience: self.jwt_audience.or(fallback.jwt_audience),
            jwt_issuer: self.jwt_issuer.or(fallback.jwt_issuer),
            jwt_leeway_secs: self.jwt_leeway_secs.or(fallback.jwt_leeway_secs),
            jwt_grants_claim: self.jwt_grants_claim.or(fallback.jwt_grants_claim),
            jwt_device_claim: self.jwt_device_claim.or(fallback.jwt_device_claim),
        }
    }
}

/// The `[jwt]` table of the TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtFile {
    /// HS256 secret file.
    pub secret_file: Option<PathBuf>,
    /// JWKS file.
    pub jwks_file: Option<PathBuf>,
    /// Required audience.
    pub audience: Option<String>,
    /// Required issuer.
    pub issuer: Option<String>,
    /// Clock skew allowed, seconds.
    pub leeway_secs: Option<u64>,
    /// The grants claim's name.
    pub grants_claim: Option<String>,
    /// The device claim's name.
    pub device_claim: Option<String>,
}

/// Where the keys of JWTs come from.
#[derive(Clone, PartialEq, Eq)]
pub enum JwtSecret {
    /// The HS256 secret's bytes.
    Bytes(Vec<u8>),
    /// None: only the JWKS verifies.
    None,
}

impl std::fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtSecret::Bytes(b) => write!(f, "JwtSecret(<{} bytes>)", b.len()),
            JwtSecret::None => f.write_str("JwtSecret::None"),
        }
    }
}

/// Resolved JWT settings: present when a secret or a JWKS file is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// The HS256 secret.
    pub secret: JwtSecret,
    /// The JWKS file (RS256/ES256 keys by `kid`).
    pub jwks_file: Option<PathBuf>,
    /// The `aud` a token must carry.
    pub audience: String,
    /// The `iss` a token must carry.
    pub issuer: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// The grants claim.
    pub grants_claim: String,
    /// The device claim.
    pub device_claim: String,
}

impl JwtConfig {
    /// A configuration with an HS256 `secret` (tests and embedders).
    pub fn hs256(secret: &[u8], audience: &str, issuer: &str) -> JwtConfig {
        JwtConfig {
            secret: JwtSecret::Bytes(secret.to_vec()),
            jwks_file: None,
            audience: audience.to_string(),
            issuer: issuer.to_string(),
            leeway: Duration::from_secs(30),
            grants_claim: "sync".into(),
            device_claim: "device".into(),
        }
    }

    /// Merges flags/env, the file's `[jwt]` table (relative paths against `base`) and
    /// `SYNC_JWT_SECRET`; `None` when JWTs are not enabled.
    pub fn resolve(
        args: &JwtArgs,
        file: Option<&JwtFile>,
        base: &Path,
        secret_env: Option<String>,
    ) -> Result<Option<JwtConfig>, ConfigError> {
        let empty = JwtFile::default();
        let file = file.unwrap_or(&empty);
        let rel = |p: &PathBuf| {
            if p.is_relative() {
                base.join(p)
            } else {
                p.clone()
            }
        };
        let secret_file = args
            .jwt_secret_file
            .clone()
            .or_else(|| file.secret_file.as_ref().map(rel));
        let jwks_file = args
            .jwt_jwks_file
            .clone()
            .or_else(|| file.jwks_file.as_ref().map(rel));
        let secret = match (&secret_file, secret_env.filter(|s| !s.is_empty())) {
            (Some(path), _) => {
                let mut bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                JwtSecret::Bytes(bytes)
            }
            (None, Some(s)) => JwtSecret::Bytes(s.into_bytes()),
            (None, None) => JwtSecret::None,
        };
        if secret == JwtSecret::None && jwks_file.is_none() {
            return Ok(None);
        }
        if let JwtSecret::Bytes(b) = &secret
            && b.len() < 32
        {
            return Err(ConfigError::Invalid(format!(
                "the JWT secret has {} bytes; HS256 needs at least 32",
                b.len()
            )));
        }
        let need = |flag: &str, v: Option<String>| {
            v.filter(|s| !s.is_empty()).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "JWTs are enabled: --{flag} is required (tokens of another audience or \
                     issuer must not be accepted)"
                ))
            })
        };
        Ok(Some(JwtConfig {
            secret,
            jwks_file,
            audience: need(
                "jwt-audience",
                args.jwt_audience.clone().or(file.audience.clone()),
            )?,
            issuer: need(
                "jwt-issuer",
                args.jwt_issuer.clone().or(file.issuer.clone()),
            )?,
            leeway: Duration::from_secs(args.jwt_leeway_secs.or(file.leeway_secs).unwrap_or(30)),
            grants_claim: args
                .jwt_grants_claim
                .clone()
                .or(file.grants_claim.clone())
                .unwrap_or_else(|| "sync".into()),
            device_claim: args
                .jwt_device_claim
                .clone()
                .or(file.device_claim.clone())
                .unwrap_or_else(|| "device".into()),
        }))
    }
}
