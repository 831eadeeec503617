//! `uniffi-bindgen generate --library <libsession_sync.so> --language python --out-dir DIR`
//!
//! The binding generator for `mobile-bindings`, in its own crate and outside the workspace's
//! default members because it takes minutes to compile; `mobile-bindings/scripts/` call it.

fn main() {
    uniffi::uniffi_bindgen_main()
}
