//! Where changeset bytes come from and go to: a file, or `-` for standard input/output.

use crate::error::CliError;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use sync_core::engine::changeset::Changeset;

/// A changeset input: a file path, or `-` for standard input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Standard input (`-`).
    Stdin,
    /// A file.
    File(PathBuf),
}

impl Input {
    /// Interprets a command-line path; `-` means standard input.
    pub fn new(path: &Path) -> Input {
        if path.as_os_str() == "-" {
            Input::Stdin
        } else {
            Input::File(path.to_path_buf())
        }
    }

    /// How the input is named in messages.
    pub fn describe(&self) -> String {
        match self {
            Input::Stdin => "standard input".to_string(),
            Input::File(path) => path.display().to_string(),
        }
    }

    /// Reads all bytes. Changesets are read whole: SQLite's own operations (invert, concat,
    /// apply) need them whole too.
    pub fn read(&self) -> Result<Vec<u8>, CliError> {
        let result = match self {
            Input::Stdin => {
                let mut bytes = Vec::new();
                io::stdin().lock().read_to_end(&mut bytes).map(|_| bytes)
            }
            Input::File(path) => std::fs::read(path),
        };
        result.map_err(|source| CliError::Read {
            what: self.describe(),
            source,
        })
    }

    /// Reads the input as a changeset, unchecked (every consumer validates).
    pub fn read_changeset(&self) -> Result<Changeset, CliError> {
        self.read().map(Changeset::from_bytes)
    }
}

/// Turns command-line paths into inputs, refusing `-` more than once (standard input can be
/// read only once).
pub fn inputs(paths: &[PathBuf]) -> Result<Vec<Input>, CliError> {
    let inputs: Vec<Input> = paths.iter().map(|p| Input::new(p)).collect();
    if inputs.iter().filter(|i| **i == Input::Stdin).count() > 1 {
        return Err(CliError::Usage(
            "standard input (`-`) can be given only once".to_string(),
        ));
    }
    Ok(inputs)
}

/// A binary output: a file path, or `-` for standard output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Standard output (`-`).
    Stdout,
    /// A file, created or truncated.
    File(PathBuf),
}

impl Output {
    /// Interprets a command-line path; `-` means standard output.
    pub fn new(path: &Path) -> Output {
        if path.as_os_str() == "-" {
            Output::Stdout
        } else {
            Output::File(path.to_path_buf())
        }
    }

    /// How the output is named in messages.
    pub fn describe(&self) -> String {
        match self {
            Output::Stdout => "standard output".to_string(),
            Output::File(path) => path.display().to_string(),
        }
    }

    /// Fails early when the output is a terminal: binary bytes would garble it. Call before
    /// doing the work, so a mistake costs nothing.
    pub fn check(&self) -> Result<(), CliError> {
        if *self == Output::Stdout && io::stdout().is_terminal() {
            return Err(CliError::Usage(
                "refusing to write a binary changeset to a terminal; \
                 use -o FILE or redirect standard output"
                    .to_string(),
            ));
        }
        Ok(())
    }

    /// Writes `bytes` in full (an empty changeset gives an empty file).
    pub fn write(&self, bytes: &[u8]) -> Result<(), CliError> {
        let result = match self {
            Output::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(bytes).and_then(|()| out.flush())
            }
            Output::File(path) => std::fs::write(path, bytes),
        };
        result.map_err(|source| CliError::Write {
            what: self.describe(),
            source,
        })
    }
}
