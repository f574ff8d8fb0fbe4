//! Process tables. The shared half ([`SharedTable`]): a page table of [`Reservation`]s that any
//! thread reads to check a pid's generation and reserve mailbox room, without locks. The local
//! half ([`ProcessTable`]): the shard's slab of process entries, touched only by its shard.
#![allow(unsafe_code, reason = "the shared table's pages are thin pointers to boxed arrays")]

use std::ptr;

use crate::loom::{AtomicPtr, Ordering};

use slab::Slab;

use crate::process::mailbox::Reservation;

#[cfg(not(loom))]
const PAGE_BITS: u32 = 10;
/// Under the loom model (`tests/loom_table.rs`), pages of two slots and eight pages: loom tracks
/// every atomic, and a model needs only a few pages to race on.
#[cfg(loom)]
const PAGE_BITS: u32 = 1;
const PAGE_SLOTS: usize = 1 << PAGE_BITS;
/// Pages per shard: 4096 × 1024 = 4,194,304 processes per shard at most.
#[cfg(not(loom))]
const MAX_PAGES: usize = 4096;
#[cfg(loom)]
const MAX_PAGES: usize = 8;
/// The most processes one shard can hold at once.
pub(crate) const MAX_PROCESSES_PER_SHARD: usize = PAGE_SLOTS * MAX_PAGES;

/// Reservations of one shard's slots, readable from every thread. A page is allocated before
/// any pid in it is handed out, and freed only with the table (when the node is).
///
/// A page is a thin pointer to `PAGE_SLOTS` reservations in a fixed-size array of pages: a
/// lookup (every send pays one) is a compare against a constant, a load, a null test and an
/// index, where a slice of `OnceLock<Box<[Reservation]>>` cost two length checks and the
/// lock's state test as well.
///
/// INVARIANT: every non-null page is the start of a `Box<[Reservation]>` of `PAGE_SLOTS`
/// elements, owned by the table, never changed once set.
pub struct SharedTable {
    pages: Box<[AtomicPtr<Reservation>; MAX_PAGES]>,
}

impl std::fmt::Debug for SharedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pages = self.pages.iter().filter(|p| !p.load(Ordering::Relaxed).is_null()).count();
        f.debug_struct("SharedTable").field("pages", &pages).finish()
    }
}

impl Default for SharedTable {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedTable {
    /// A table with no page yet.
    pub fn new() -> Self {
        let pages: Box<[AtomicPtr<Reservation>]> = (0..MAX_PAGES).map(|_| AtomicPtr::new(ptr::null_mut())).collect();
        let Ok(pages) = pages.try_into() else { unreachable!("MAX_PAGES pages were made") };
        SharedTable { pages }
    }

    /// The reservation of `slot`, if its page exists.
    #[inline]
    pub fn get(&self, slot: u32) -> Option<&Reservation> {
        let page = self.pages.get((slot >> PAGE_BITS) as usize)?.load(Ordering::Acquire);
        if page.is_null() {
            return None;
        }
        // SAFETY: a non-null page holds `PAGE_SLOTS` reservations (INVARIANT), published by
        // the release CAS in `ensure` that this acquire load saw, and lives as long as `self`;
        // the index is below `PAGE_SLOTS`.
        Some(unsafe { &*page.add(slot as usize & (PAGE_SLOTS - 1)) })
    }

    /// The reservation of `slot`, allocating its page. `None` past the table's end.
    pub fn ensure(&self, slot: usize) -> Option<&Reservation> {
        let page = self.pages.get(slot >> PAGE_BITS)?;
        if page.load(Ordering::Acquire).is_null() {
            let fresh: Box<[Reservation]> = (0..PAGE_SLOTS).map(|_| Reservation::new()).collect();
            let fresh = Box::into_raw(fresh).cast::<Reservation>();
            if page.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire).is_err() {
                // SAFETY: `fresh` came from `Box::into_raw` of `PAGE_SLOTS` reservations just
                // above and was not published (the CAS failed): it is freed once, here.
                drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(fresh, PAGE_SLOTS)) });
            }
        }
        self.get(u32::try_from(slot).ok()?)
    }
}

impl Drop for SharedTable {
    fn drop(&mut self) {
        for page in self.pages.iter_mut() {
            // (A load, not `get_mut`: loom's atomics have none; `&mut self` excludes any race.)
            let page = page.load(Ordering::Acquire);
            if !page.is_null() {
                // SAFETY: the page is a `Box<[Reservation]>` of `PAGE_SLOTS` owned by the table
                // (INVARIANT); the table is being dropped, so nothing refers to it any more.
                drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(page, PAGE_SLOTS)) });
            }
        }
    }
}

/// The shard-local slab of process entries, keyed by slot.
pub(crate) type ProcessTable<E> = Slab<E>;
