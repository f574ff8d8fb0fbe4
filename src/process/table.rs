//! Process tables. The shared half ([`SharedTable`]): a page table of [`Reservation`]s that any
//! thread reads to check a pid's generation and reserve mailbox room, without locks. The local
//! half ([`ProcessTable`]): the shard's slab of process entries, touched only by its shard.

use std::sync::OnceLock;

use slab::Slab;

use crate::process::mailbox::Reservation;

const PAGE_BITS: u32 = 10;
const PAGE_SLOTS: usize = 1 << PAGE_BITS;
/// Pages per shard: 4096 × 1024 = 4,194,304 processes per shard at most.
const MAX_PAGES: usize = 4096;
/// The most processes one shard can hold at once.
pub(crate) const MAX_PROCESSES_PER_SHARD: usize = PAGE_SLOTS * MAX_PAGES;

/// Reservations of one shard's slots, readable from every thread. Pages are allocated by the
/// owner shard before any pid in them is handed out, and never freed before the node is.
pub(crate) struct SharedTable {
    pages: Box<[OnceLock<Box<[Reservation]>>]>,
}

impl std::fmt::Debug for SharedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pages = self.pages.iter().filter(|p| p.get().is_some()).count();
        f.debug_struct("SharedTable").field("pages", &pages).finish()
    }
}

impl SharedTable {
    pub(crate) fn new() -> Self {
        SharedTable { pages: (0..MAX_PAGES).map(|_| OnceLock::new()).collect() }
    }

    /// The reservation of `slot`, if its page exists.
    #[inline]
    pub(crate) fn get(&self, slot: u32) -> Option<&Reservation> {
        let page = self.pages.get((slot >> PAGE_BITS) as usize)?.get()?;
        page.get(slot as usize & (PAGE_SLOTS - 1))
    }

    /// Owner only: the reservation of `slot`, allocating its page. `None` past the table's end.
    pub(crate) fn ensure(&self, slot: usize) -> Option<&Reservation> {
        let page = self.pages.get(slot >> PAGE_BITS)?;
        let page = page.get_or_init(|| (0..PAGE_SLOTS).map(|_| Reservation::new()).collect());
        page.get(slot & (PAGE_SLOTS - 1))
    }
}

/// The shard-local slab of process entries, keyed by slot.
pub(crate) type ProcessTable<E> = Slab<E>;
