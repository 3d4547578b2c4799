//! Per-thread counter shards, for the counts a function annotation adds on
//! every call.
//!
//! A relaxed `fetch_add` is still a locked instruction: it waits for the
//! core's pending stores and costs several nanoseconds when the function
//! around it has just written memory. A shard is a block of counters written
//! only by the thread that holds it, so its add is a plain load and store;
//! reading a counter sums its slot across every shard.
//!
//! Shards are never freed: a thread that exits hands its shard (and the
//! counts in it) to the next thread that starts counting, so the number of
//! shards is the largest number of threads that counted at the same time,
//! [`SLOTS`] × 8 bytes each.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// How many counters can count per thread; further ones use a shared
/// atomic instead.
pub(crate) const SLOTS: usize = 128;

/// A slot index plus one; 0 means "not assigned yet".
const UNASSIGNED: usize = 0;
/// Every slot is taken: use the shared atomic.
const NO_SLOT: usize = usize::MAX;

struct Shard {
    slots: [AtomicU64; SLOTS],
}

/// Every shard ever created, for reading.
static SHARDS: Mutex<Vec<&'static Shard>> = Mutex::new(Vec::new());
/// Shards of threads that have exited, for reuse.
static FREE: Mutex<Vec<&'static Shard>> = Mutex::new(Vec::new());
/// The next slot to hand out; held while a counter's slot is assigned, so
/// two threads counting a counter for the first time at once take one slot.
static NEXT_SLOT: Mutex<usize> = Mutex::new(0);

/// The calling thread's shard; returned to [`FREE`] when the thread exits.
struct Held(&'static Shard);

impl Held {
    fn acquire() -> Self {
        let reused = FREE.lock().unwrap_or_else(PoisonError::into_inner).pop();
        Self(reused.unwrap_or_else(|| {
            let shard: &'static Shard = Box::leak(Box::new(Shard {
                slots: [const { AtomicU64::new(0) }; SLOTS],
            }));
            SHARDS
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(shard);
            shard
        }))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Counts made later in this thread's exit go to the shared atomic.
        SHARD.set(None);
        FREE.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self.0);
    }
}

thread_local! {
    /// The calling thread's shard for the hot path: a constant-initialised
    /// cell without a destructor, so reading it is one TLS load.
    static SHARD: Cell<Option<&'static Shard>> = const { Cell::new(None) };
    /// Owns the shard and gives it back when the thread exits.
    static HELD: Held = Held::acquire();
}

/// The calling thread's shard, taking one on its first use; `None` while the
/// thread is exiting.
#[cold]
fn take_shard() -> Option<&'static Shard> {
    let shard = HELD.try_with(|held| held.0).ok()?;
    SHARD.set(Some(shard));
    Some(shard)
}

/// A counter's place in the shards, assigned on its first per-thread add.
#[derive(Debug)]
pub(crate) struct Slot(AtomicUsize);

impl Slot {
    pub(crate) const fn new() -> Self {
        Self(AtomicUsize::new(UNASSIGNED))
    }

    /// Adds `n` to this thread's shard; false when there is no slot (more
    /// than [`SLOTS`] counters count this way) or the thread is exiting, and
    /// the caller must count elsewhere.
    #[inline]
    pub(crate) fn add(&self, n: u64) -> bool {
        let mut slot = self.0.load(Ordering::Relaxed);
        if slot == UNASSIGNED {
            slot = self.assign();
        }
        let Some(index) = slot.checked_sub(1).filter(|&i| i < SLOTS) else {
            return false;
        };
        let Some(shard) = SHARD.get().or_else(take_shard) else {
            return false;
        };
        let Some(cell) = shard.slots.get(index) else {
            return false;
        };
        // Only this thread writes this cell: no locked instruction.
        cell.store(
            cell.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
        true
    }

    #[cold]
    fn assign(&self) -> usize {
        let mut next = NEXT_SLOT.lock().unwrap_or_else(PoisonError::into_inner);
        // Another thread may have assigned it while this one waited.
        let current = self.0.load(Ordering::Relaxed);
        if current != UNASSIGNED {
            return current;
        }
        let mine = if *next < SLOTS {
            *next += 1;
            *next
        } else {
            NO_SLOT
        };
        self.0.store(mine, Ordering::Relaxed);
        mine
    }

    /// The sum of this counter's cells across every shard.
    pub(crate) fn sum(&self) -> u64 {
        let slot = self.0.load(Ordering::Relaxed);
        let Some(index) = slot.checked_sub(1).filter(|&i| i < SLOTS) else {
            return 0;
        };
        SHARDS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(|shard| shard.slots.get(index))
            .fold(0_u64, |sum, cell| {
                sum.wrapping_add(cell.load(Ordering::Relaxed))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test, because running out of slots is global to the process (and
    // no other test in this binary counts through slots).
    #[test]
    fn counts_from_every_thread_add_up_and_past_the_last_slot_none_is_given() {
        static SLOT: Slot = Slot::new();
        assert_eq!(SLOT.sum(), 0);
        let start = std::sync::Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let start = std::sync::Arc::clone(&start);
                std::thread::spawn(move || {
                    // All at once: the first adds race to assign the slot.
                    start.wait();
                    for _ in 0..1000 {
                        assert!(SLOT.add(1));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(SLOT.add(5));
        assert_eq!(SLOT.sum(), 8005);
        // A later thread reuses an exited thread's shard; its counts stay.
        std::thread::spawn(|| assert!(SLOT.add(1))).join().unwrap();
        assert_eq!(SLOT.sum(), 8006);

        let others: Vec<&'static Slot> = (0..SLOTS)
            .map(|_| &*Box::leak(Box::new(Slot::new())))
            .collect();
        let refused: Vec<_> = others.iter().filter(|slot| !slot.add(1)).collect();
        // The eight threads that raced to count `SLOT` first took one slot.
        assert_eq!(refused.len(), 1, "{SLOTS} slots, one taken, {SLOTS} asked");
        for slot in refused {
            assert_eq!(slot.sum(), 0);
        }
        assert_eq!(SLOT.sum(), 8006);
    }
}
