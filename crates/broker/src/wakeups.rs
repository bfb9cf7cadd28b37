//! What long-polling fetches wait for: new data in the partitions they read.
//!
//! A Fetch that finds too little waits until its deadline or until one of its partitions
//! may have more to give: its high watermark moved (a sync under `log.flush = always`, an
//! append otherwise) or its last stable offset did (a transaction marker). Each such event
//! wakes one signal of `2^FETCH_WAKE_SHARD_BITS`, chosen by the partition, and a Fetch waits
//! on the signals of its own partitions, so a produce wakes the fetches of its partition
//! (and of the few that share its signal), not every waiting fetch, as one broker-wide
//! signal did. A Fetch that is woken reads its partitions again and, if still short, waits
//! again: a shared signal costs a spurious re-read, never a missed wake-up.
//!
//! The syncs signal through the log's [`sluice_log::SyncedHook`], so every path that syncs
//! (a produce, a transaction's markers, a store commit that syncs deferred markers) wakes
//! without knowing about fetches. (Under `log.flush = interval` the flusher's syncs signal
//! too, which costs each waiting fetch one re-read per interval.) DeleteTopics, DeleteRecords
//! and retention signal the partitions whose fetches must now answer with an error.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sluice_log::Partition;
use tokio::sync::Notify;

use crate::limits::FETCH_WAKE_SHARD_BITS;

/// The signals.
pub(crate) struct Wakeups {
    shards: Box<[Notify]>,
}

impl Wakeups {
    pub fn new() -> Wakeups {
        Wakeups { shards: (0..1usize << FETCH_WAKE_SHARD_BITS).map(|_| Notify::new()).collect() }
    }

    /// The hook that partitions call after a sync moved their synced offset.
    pub fn synced_hook(self: &Arc<Self>) -> sluice_log::SyncedHook {
        let wakeups = Arc::clone(self);
        Arc::new(move |partition: &Partition| wakeups.wake(partition))
    }

    /// The signal of `partition`: a Fibonacci hash of its address, which is stable while
    /// the partition lives (a deleted and re-created topic has new partitions, and its
    /// fetches look them up again).
    fn shard(&self, partition: &Partition) -> usize {
        let address = std::ptr::from_ref(partition) as usize as u64;
        let hashed = address.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - FETCH_WAKE_SHARD_BITS);
        debug_assert!((hashed as usize) < self.shards.len());
        hashed as usize
    }

    /// Wakes the fetches waiting for `partition`.
    pub fn wake(&self, partition: &Partition) {
        if let Some(shard) = self.shards.get(self.shard(partition)) {
            shard.notify_waiters();
        }
    }

    /// Wakes every waiting fetch.
    pub fn wake_all(&self) {
        for shard in self.shards.iter() {
            shard.notify_waiters();
        }
    }

    /// The signals of `partitions`, each once, to wait on with [`Wakeups::wait_any`].
    pub fn shards_of<'a>(&self, partitions: impl IntoIterator<Item = &'a Partition>) -> Vec<usize> {
        let mut shards: Vec<usize> = partitions.into_iter().map(|p| self.shard(p)).collect();
        shards.sort_unstable();
        shards.dedup();
        shards
    }

    /// Registers for the next wake-up of any of `shards` now (a wake-up after this call and
    /// before the await is not lost), and returns the future that waits for it. With no
    /// shards it never completes.
    pub fn wait_any(&self, shards: &[usize]) -> impl Future<Output = ()> + '_ {
        let mut waits: Vec<Pin<Box<tokio::sync::futures::Notified<'_>>>> = shards
            .iter()
            .filter_map(|&shard| self.shards.get(shard))
            .map(|notify| Box::pin(notify.notified()))
            .collect();
        for wait in &mut waits {
            wait.as_mut().enable();
        }
        std::future::poll_fn(move |context| {
            for wait in &mut waits {
                if wait.as_mut().poll(context).is_ready() {
                    return std::task::Poll::Ready(());
                }
            }
            std::task::Poll::Pending
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls once: whether the wait is over.
    fn woken(wait: Pin<&mut impl Future<Output = ()>>) -> bool {
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        wait.poll(&mut context).is_ready()
    }

    fn partition(dir: &std::path::Path, name: &str, wakeups: &Arc<Wakeups>) -> Partition {
        let log = sluice_log::PartitionLog::open(&dir.join(name), Default::default(), 0).unwrap();
        Partition::with_synced_hook(log, wakeups.synced_hook())
    }

    fn batch() -> Vec<u8> {
        let spec = sluice_wire::batch::BatchSpec::default();
        sluice_wire::batch::build_batch(&spec, &[(None, Some(b"v".as_slice()))])
    }

    #[test]
    fn the_signals_are_small() {
        let bytes = std::mem::size_of::<Notify>() << FETCH_WAKE_SHARD_BITS;
        assert!(bytes <= 64 * 1024, "{bytes} bytes of signals");
    }

    #[test]
    fn a_sync_wakes_the_fetches_of_its_partition_only() {
        let dir = tempfile::tempdir().unwrap();
        let wakeups = Arc::new(Wakeups::new());
        let mut partitions = Vec::new();
        for n in 0..8 {
            partitions.push(partition(dir.path(), &format!("t-{n}"), &wakeups));
        }
        // Two partitions on different signals.
        let first = &partitions[0];
        let Some(other) = partitions.iter().find(|p| wakeups.shard(p) != wakeups.shard(first))
        else {
            panic!("eight partitions on one signal");
        };
        let mut waiting_first = Box::pin(wakeups.wait_any(&wakeups.shards_of([first])));
        let mut waiting_other = Box::pin(wakeups.wait_any(&wakeups.shards_of([other])));
        let mut waiting_both = Box::pin(wakeups.wait_any(&wakeups.shards_of([first, other])));
        assert!(!woken(waiting_first.as_mut()));

        let info = first.append(&batch(), 1).unwrap();
        assert!(!woken(waiting_first.as_mut()), "appended, not yet synced");
        first.sync_to(info.last_offset + 1).unwrap();
        assert!(woken(waiting_first.as_mut()), "the sync wakes its fetches");
        assert!(woken(waiting_both.as_mut()));
        assert!(!woken(waiting_other.as_mut()), "another partition's wait");

        // A sync that moves nothing wakes nobody.
        let mut again = Box::pin(wakeups.wait_any(&wakeups.shards_of([first])));
        first.sync_to(info.last_offset + 1).unwrap();
        assert!(!woken(again.as_mut()));
        wakeups.wake_all();
        assert!(woken(again.as_mut()));
        assert!(woken(waiting_other.as_mut()));
        // No partitions: never woken.
        let mut none = Box::pin(wakeups.wait_any(&[]));
        wakeups.wake_all();
        assert!(!woken(none.as_mut()));
    }
}
