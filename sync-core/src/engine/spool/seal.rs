//! A sealed spool file's key stream.

/// The key stream of one sealed spool file: ChaCha20 under a key and nonce drawn for the file
/// from SQLite's CSPRNG (`sqlite3_randomness`, seeded from the operating system), kept only
/// in memory and wiped on drop.
pub struct Seal {
    key: zeroize::Zeroizing<[u8; 32]>,
    nonce: [u8; 12],
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seal(..)")
    }
}

impl Seal {
    pub(super) fn new() -> Seal {
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        let mut nonce = [0u8; 12];
        // SAFETY: both buffers are valid for the lengths given.
        unsafe {
            rusqlite::ffi::sqlite3_randomness(32, key.as_mut_ptr().cast());
            rusqlite::ffi::sqlite3_randomness(12, nonce.as_mut_ptr().cast());
        }
        Seal { key, nonce }
    }

    /// XORs `buf` with the key stream from byte `offset` (sealing and unsealing alike).
    pub(super) fn apply(&self, offset: u64, buf: &mut [u8]) {
        use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
        let mut c = chacha20::ChaCha20::new(&(*self.key).into(), &self.nonce.into());
        c.seek(offset);
        c.apply_keystream(buf);
    }
}
