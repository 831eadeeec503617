//! Configuration: command-line flags, `SYNC_*` environment variables and an optional TOML file
//! (`--config PATH`), with that precedence (flags > env > file > defaults). clap handles flags
//! and env; the file and the defaults fill what neither set. `docs/operations.md` has the
//! reference.
//!
//! | module | its job |
//! |---|---|
//! | `args` | the flags and `SYNC_*` variables (clap) |
//! | `file` | the TOML file |
//! | `server` | [`ServerConfig`]: the three merged over the defaults, and checked |
//! | `key` | the data directory's encryption key (a key file or `SYNC_ENCRYPTION_KEY`) |
//! | `jwt` | the JWT settings (bring-your-own identity provider) |
//! | `kinds` | the enumerated settings ([`LogFormat`], [`Durability`]) |
//! | `error` | [`ConfigError`] |

mod args;
mod error;
mod file;
mod jwt;
mod key;
mod kinds;
mod server;
#[cfg(test)]
mod tests;

pub use args::{GlobalArgs, ServeArgs};
pub use error::ConfigError;
pub use file::FileConfig;
pub use jwt::{JwtArgs, JwtConfig, JwtFile, JwtSecret};
pub use key::KEY_ENV;
pub use kinds::{Durability, LogFormat};
pub use server::{ServerConfig, data_dir, data_dir_keyed, encryption_key};
