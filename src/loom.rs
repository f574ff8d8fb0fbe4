//! Facade over the atomics (and the mutex) used by lock-free code: std's normally, loom's under
//! `--cfg loom`, so the same source is model-checked by `tests/loom_*.rs`.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

/// What a streamed body's backlog and its waiter use (`http::backlog`).
#[cfg(all(loom, feature = "web"))]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(all(not(loom), feature = "web"))]
pub(crate) use std::sync::{Mutex, MutexGuard};
