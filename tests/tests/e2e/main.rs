//! End-to-end tests: real `sync-server`s on 127.0.0.1:0 (in-process), real client databases
//! on disk, real HTTP.

mod sync;
