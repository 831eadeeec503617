//! The data directory's encryption key: `--encryption-key-file PATH`
//! (`SYNC_ENCRYPTION_KEY_FILE`), the key itself in `SYNC_ENCRYPTION_KEY`, or
//! `encryption_key_file` in the TOML file — never the key itself on the command line, where
//! every user of the machine could read it in the process list.

use super::error::ConfigError;
use std::path::{Path, PathBuf};
use sync_core::engine::cipher::{self, EncryptionKey};

/// The environment variable holding the key itself (a passphrase, or 64 hex digits).
pub const KEY_ENV: &str = "SYNC_ENCRYPTION_KEY";

/// The key from the sources in order: the key file named by the flag or
/// `SYNC_ENCRYPTION_KEY_FILE` (`flag_file`), the key in `SYNC_ENCRYPTION_KEY` (`env_key`),
/// the key file of the TOML file (`toml_file`, already relative to the file's directory).
/// A key file and `SYNC_ENCRYPTION_KEY` both given is an error (which one was meant?); so is
/// any key in a build without encryption.
pub fn resolve(
    flag_file: Option<&Path>,
    env_key: Option<String>,
    toml_file: Option<PathBuf>,
) -> Result<Option<EncryptionKey>, ConfigError> {
    let bad = |e: cipher::CipherError| ConfigError::Invalid(e.to_string());
    let key = match (flag_file, env_key) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Invalid(format!(
                "both an encryption key file and {KEY_ENV} are set: give the key one way"
            )));
        }
        (Some(file), None) => Some(read_key_file(file)?),
        (None, Some(text)) => Some(EncryptionKey::from_file_content(&text).map_err(bad)?),
        (None, None) => match toml_file {
            Some(file) => Some(read_key_file(&file)?),
            None => None,
        },
    };
    if key.is_some() && !cipher::ENABLED {
        return Err(bad(cipher::CipherError::Unsupported));
    }
    Ok(key)
}

fn read_key_file(path: &Path) -> Result<EncryptionKey, ConfigError> {
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        ConfigError::Invalid(format!(
            "cannot read the encryption key file {}: {e}",
            path.display()
        ))
    })?);
    EncryptionKey::from_file_content(&text)
        .map_err(|e| ConfigError::Invalid(format!("encryption key file {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_comes_one_way() {
        assert!(resolve(None, None, None).unwrap().is_none());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "secret\n").unwrap();
        let err = resolve(Some(&file), Some("x".into()), None).unwrap_err();
        assert!(err.to_string().contains("one way"), "{err}");
        let err = resolve(Some(&dir.path().join("missing")), None, None).unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot read the encryption key file"),
            "{err}"
        );
        let got = resolve(Some(&file), None, None);
        if cipher::ENABLED {
            assert_eq!(
                got.unwrap(),
                Some(EncryptionKey::passphrase("secret").unwrap())
            );
            assert!(resolve(None, Some(String::new()), None).is_err());
        } else {
            let err = got.unwrap_err();
            assert!(err.to_string().contains("no encryption"), "{err}");
        }
    }
}
