//! Facade over the atomics used by lock-free code: std's normally, loom's under `--cfg loom`,
//! so the same source is model-checked by `tests/loom_*.rs`.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering, fence};
