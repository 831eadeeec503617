//! How every exported call runs: no panic crosses the FFI ([`guard`]), no call from inside a
//! transaction body reaches the writer it would wait for ([`BodyScope`]), and the awaitable
//! calls run their blocking work on a thread of their own ([`off_thread`]).

use crate::error::SyncError;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The message of a panic payload.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// Runs `f`, turning a panic into [`SyncError::Internal`]: no panic crosses the FFI.
pub(crate) fn guard<T>(f: impl FnOnce() -> Result<T, SyncError>) -> Result<T, SyncError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        Err(SyncError::Internal {
            reason: panic_message(&*panic),
        })
    })
}

thread_local! {
    /// Set while this thread (the writer's) runs a transaction body.
    static IN_BODY: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as running a transaction body until dropped.
pub(crate) struct BodyScope(());

impl BodyScope {
    pub(crate) fn enter() -> Self {
        IN_BODY.with(|b| b.set(true));
        BodyScope(())
    }
}

impl Drop for BodyScope {
    fn drop(&mut self) {
        IN_BODY.with(|b| b.set(false));
    }
}

/// Refuses a `SyncDatabase` call made from inside a transaction body: the body runs on the
/// writer's thread, and the call would wait for that writer — forever.
pub(crate) fn not_in_body() -> Result<(), SyncError> {
    if IN_BODY.with(Cell::get) {
        return Err(SyncError::InvalidUse {
            reason: "a SyncDatabase call inside a transaction body would wait for the \
                     transaction itself; use the transaction object's execute() and query()"
                .into(),
        });
    }
    Ok(())
}

/// Runs the blocking `f` on a new thread and completes when it returns, so an awaitable call
/// never blocks the caller's executor and needs no particular async runtime. Dropping the
/// future does not stop `f`: a write that started commits or rolls back as a whole.
pub(crate) async fn off_thread<T, F>(f: F) -> Result<T, SyncError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, SyncError> + Send + 'static,
{
    not_in_body()?;
    let (tx, rx) = futures_channel::oneshot::channel();
    std::thread::Builder::new()
        .name("session-sync-call".into())
        .spawn(move || {
            let _ = tx.send(guard(f));
        })
        .map_err(|e| SyncError::Internal {
            reason: format!("cannot start a thread for the call: {e}"),
        })?;
    rx.await.unwrap_or_else(|_| {
        Err(SyncError::Internal {
            reason: "the call's thread ended without an answer".into(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_internal_with_its_message() {
        let err = guard::<()>(|| panic!("boom {}", 7)).unwrap_err();
        assert!(
            matches!(&err, SyncError::Internal { reason } if reason == "boom 7"),
            "{err:?}"
        );
        let err = guard::<()>(|| std::panic::panic_any(3_u8)).unwrap_err();
        assert!(matches!(err, SyncError::Internal { .. }));
        assert_eq!(guard(|| Ok(5)).unwrap(), 5);
    }

    #[test]
    fn calls_from_inside_a_body_are_refused_until_it_ends() {
        assert!(not_in_body().is_ok());
        {
            let _scope = BodyScope::enter();
            assert!(matches!(not_in_body(), Err(SyncError::InvalidUse { .. })));
        }
        assert!(not_in_body().is_ok());
    }
}
