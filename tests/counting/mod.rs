//! A counting global allocator for the test binaries that measure the runtime's allocations
//! (`alloc_actor`, `review40`, `review65`): how many allocations were made, how many bytes
//! are live, and, once armed, where the first allocations after the arming were made (where a
//! path that should allocate nothing does). Each binary that includes this module installs it
//! with `#[global_allocator] static GLOBAL: counting::Counting = counting::Counting;`.
#![allow(dead_code, reason = "each test binary uses a subset of the helpers")]
#![allow(unreachable_pub, reason = "a test helper module: `pub` is for the test files that include it")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

pub struct Counting;

/// Allocations (and reallocations) made so far, by every thread.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated and not yet freed.
static LIVE: AtomicI64 = AtomicI64::new(0);
/// Armed: the next allocations record their backtraces in `TRACES`, up to `TRACED`.
static ARMED: AtomicBool = AtomicBool::new(false);
static TRACES: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// How many backtraces are recorded once armed.
const TRACED: usize = 12;
/// Allocations since armed.
static SINCE: AtomicU64 = AtomicU64::new(0);
/// The least size traced.
static LEAST: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread is recording a backtrace (its allocations meanwhile are the test's own:
    /// neither counted nor traced).
    static TRACING: Cell<bool> = const { Cell::new(false) };
}

/// Allocations made so far.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::SeqCst)
}

/// Bytes allocated and not freed now.
pub fn live() -> i64 {
    LIVE.load(Ordering::SeqCst)
}

/// Records the backtraces of the next allocations (by any thread), for [`traces`].
pub fn arm() {
    arm_from(0);
}

/// Records the backtraces of the next allocations of at least `size` bytes, for [`traces`].
pub fn arm_from(size: usize) {
    TRACES.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    SINCE.store(0, Ordering::SeqCst);
    LEAST.store(size, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
}

/// Stops recording; where the allocations traced since [`arm`] were made (the frames in
/// pinion; a trace repeated in a row, once).
pub fn traces() -> Vec<String> {
    ARMED.store(false, Ordering::SeqCst);
    let mut traces = std::mem::take(&mut *TRACES.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    traces.dedup();
    traces
}

/// Records where this allocation is made (the first ones, then one in every 1000).
#[cold]
fn trace(size: usize) {
    if size < LEAST.load(Ordering::Relaxed) {
        return;
    }
    let n = SINCE.fetch_add(1, Ordering::Relaxed);
    if n >= TRACED as u64 / 2 && n % 1000 != 999 {
        return;
    }
    let thread = std::thread::current().name().unwrap_or("?").to_owned();
    let trace = std::backtrace::Backtrace::force_capture().to_string();
    let ours = trace.lines().filter(|l| l.contains("pinion::")).map(str::trim);
    let text = ours.fold(format!("{size} bytes on {thread}:"), |t, l| t + "\n  " + l);
    let mut traces = TRACES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    traces.push(text);
    if traces.len() >= TRACED {
        ARMED.store(false, Ordering::SeqCst);
    }
}

/// Counts an allocation, unless made while this thread records a backtrace (those are the
/// test's own).
#[inline(always)]
fn counted(size: usize) {
    let Ok(false) = TRACING.try_with(Cell::get) else { return };
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    if ARMED.load(Ordering::Relaxed) {
        let _ = TRACING.try_with(|t| t.set(true));
        trace(size);
        let _ = TRACING.try_with(|t| t.set(false));
    }
}

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        counted(layout.size());
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with `layout` (every allocation here goes there).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        counted(new_size);
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with `layout`; the caller's contract is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
