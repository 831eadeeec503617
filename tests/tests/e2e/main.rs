//! End-to-end tests: real `sync-server`s on 127.0.0.1:0 (in-process), real client databases
//! on disk, real HTTP. Helpers are in the crate's library (`session_sync_tests`).
//!
//! | module | what a user would notice |
//! |---|---|
//! | `adopt` | a file's existing rows reach the server parents first, in many transactions or one uploaded in parts; a second device bootstraps equal |
//! | `sync` | devices that edited offline end equal to the server and to each other; edits to different columns of a row merge |
//! | `policies` | delete vs update and update vs update end as the server's policy says on every device, the losing device included; a pulled delete turns a pending update into a local conflict |
//! | `crash` | a client killed with SIGKILL loses no acknowledged write |
//! | `fts` | rows from other devices become searchable; the index is rebuilt when deleted and never synced |
//! | `rowids` | leased ranges never collide; an exhausted lease is a typed error; an id collision is reported |
//! | `jwt` | a client whose credentials provider hands out JWTs keeps syncing across an expired token (401 → refresh → retry), stores no token in its file, and a provider that cannot refresh is an auth error |
//! | `errors` | bad token, server down, untrackable table, writes through `read` |
//! | `upgrade` | a migration deployed while a device has edits pending: every device upgrades in place on its next sync (or `upgrade`), the edits land, one the new schema cannot take is in the rejected queue with its reason |
//! | `hostile` | a server's log entry that writes an internal table (any letter case) is refused as corruption and changes nothing |
//! | `lifecycle` | a server log that lost its tail and grew again, a row changed behind the library's back: detected at the next sync (`verify` tells before), repaired from a snapshot with pending writes kept |
//! | `watch` | a watched query hears of local and remote writes to what it reads, not of others; the status shows a push in progress; async calls leave the executor free |
//! | `background` | a write on one device appears on another without `sync_now` (server events) |

mod adopt;
mod background;
mod crash;
mod errors;
mod fts;
mod hostile;
mod jwt;
mod lifecycle;
mod policies;
mod rejected;
mod rowids;
mod sync;
mod upgrade;
mod watch;
