//! A partition shared between connections: the log behind a mutex, plus group commit.
//!
//! Group commit: an acknowledged produce must be synced before its response. Appends only
//! write (to the page cache) under the log mutex; then each waiter calls
//! [`Partition::sync_to`]. The first waiter takes the sync lock, notes the log end, syncs
//! the active file, and publishes that end as synced; the waiters that queued meanwhile find
//! their records already covered and return without a sync of their own. So one sync covers
//! every append that was waiting on it.
//!
//! With `log.flush = always` the high watermark is the synced offset: consumers never see a
//! record that a crash could take back.
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use crate::error::io;
use crate::partition::Located;
use crate::{AppendInfo, FlushPolicy, PartitionLog, Result};

/// Called with the partition each time a sync moved its synced offset (under
/// `log.flush = always`, its high watermark): a broker wakes the reads waiting for it. It
/// runs on the syncing thread, so it must only signal, never block.
pub type SyncedHook = Arc<dyn Fn(&Partition) + Send + Sync>;

/// One partition, safe to share.
pub struct Partition {
    log: Mutex<PartitionLog>,
    /// Every offset below this is synced to disk.
    synced_offset: AtomicI64,
    /// Held while a sync runs; waiters queue here.
    sync_lock: Mutex<()>,
    synced_hook: Option<SyncedHook>,
}

impl Partition {
    /// Wraps an opened log; what recovery kept was synced by `PartitionLog::open`.
    pub fn new(log: PartitionLog) -> Partition {
        let end = log.log_end_offset();
        Partition {
            log: Mutex::new(log),
            synced_offset: AtomicI64::new(end),
            sync_lock: Mutex::new(()),
            synced_hook: None,
        }
    }

    /// As [`Partition::new`], with `hook` called after every sync that moves the synced
    /// offset.
    pub fn with_synced_hook(log: PartitionLog, hook: SyncedHook) -> Partition {
        Partition { synced_hook: Some(hook), ..Partition::new(log) }
    }

    /// Runs `f` with the log locked.
    pub fn with_log<T>(&self, f: impl FnOnce(&mut PartitionLog) -> T) -> T {
        let mut guard = self.log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }

    /// Appends (no sync). Blocking: call from a blocking context.
    pub fn append(&self, bytes: &[u8], now_ms: i64) -> Result<AppendInfo> {
        self.with_log(|log| log.append(bytes, now_ms))
    }

    /// Returns once every offset below `end_offset` is synced (group commit).
    pub fn sync_to(&self, end_offset: i64) -> Result<()> {
        if self.synced_offset.load(Ordering::Acquire) >= end_offset {
            return Ok(());
        }
        let _guard = self.sync_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.with_log(|log| log.check_healthy())?;
        if self.synced_offset.load(Ordering::Acquire) >= end_offset {
            return Ok(());
        }
        let (file, path, target) = self.with_log(|log| {
            let (file, path) = log.active_file();
            (file, path, log.log_end_offset())
        });
        // Earlier segments were synced when they were rolled, so the active file is all.
        if let Err(error) = file.sync_data() {
            self.with_log(|log| log.mark_failed());
            return Err(io("sync segment", &path)(error));
        }
        let before = self.synced_offset.fetch_max(target, Ordering::AcqRel);
        if before < target {
            if let Some(hook) = &self.synced_hook {
                hook(self);
            }
        }
        Ok(())
    }

    /// Syncs every partition up to its end offset, the partitions in parallel on the sync
    /// threads (their fsyncs overlap in the device, and in the file system's journal where
    /// it has one, so many partitions cost about one sync), and returns each outcome in
    /// order. Blocking.
    pub fn sync_each(targets: &[(Arc<Partition>, i64)]) -> Vec<Result<()>> {
        if let [(partition, end)] = targets {
            return vec![partition.sync_to(*end)];
        }
        let (done, outcomes) = mpsc::channel();
        for (index, (partition, end)) in targets.iter().enumerate() {
            let (partition, end, done) = (Arc::clone(partition), *end, done.clone());
            sync_threads::run(Box::new(move || {
                let _ = done.send((index, partition.sync_to(end)));
            }));
        }
        drop(done);
        let mut results: Vec<Option<Result<()>>> = targets.iter().map(|_| None).collect();
        for (index, outcome) in outcomes {
            if let Some(slot) = results.get_mut(index) {
                *slot = Some(outcome);
            }
        }
        results
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| {
                    let stopped = std::io::Error::other("the sync thread stopped");
                    Err(io("sync segment", std::path::Path::new(""))(stopped))
                })
            })
            .collect()
    }

    /// Offsets below this are synced.
    pub fn synced_offset(&self) -> i64 {
        self.synced_offset.load(Ordering::Acquire)
    }

    /// The offset consumers may read up to (exclusive).
    pub fn high_watermark(&self) -> i64 {
        self.with_log(|log| match log.config().flush {
            FlushPolicy::Always => self.synced_offset().min(log.log_end_offset()),
            FlushPolicy::Interval { .. } | FlushPolicy::Never => log.log_end_offset(),
        })
    }

    /// The last stable offset (`read_committed` consumers read below it) and the high
    /// watermark, read together.
    pub fn stable_offsets(&self) -> (i64, i64) {
        let high_watermark = self.high_watermark();
        let last_stable = self.with_log(|log| log.last_stable_offset(high_watermark));
        (last_stable, high_watermark)
    }

    /// Reads whole batches from `offset`, at most `max_bytes` (an oversized first batch only
    /// with `oversized_ok`, see [`Located::read`]), below the high watermark. The file I/O
    /// runs outside the log lock.
    pub fn read(&self, offset: i64, max_bytes: usize, oversized_ok: bool) -> Result<Vec<u8>> {
        self.read_below(offset, max_bytes, oversized_ok, self.high_watermark())
    }

    /// Like [`Partition::read`], but below `upper` (the high watermark, or the last stable
    /// offset for `read_committed`), which must not exceed the high watermark.
    pub fn read_below(
        &self,
        offset: i64,
        max_bytes: usize,
        oversized_ok: bool,
        upper: i64,
    ) -> Result<Vec<u8>> {
        match self.slice_below(offset, max_bytes, oversized_ok, upper, crate::Wait::ForDisk)? {
            Some(slice) => slice.read(),
            None => Ok(Vec::new()),
        }
    }

    /// Like [`Partition::read_below`], but only locates the batches (see
    /// [`crate::LogSlice`]), reading their headers as `wait` allows: `None` when none
    /// qualifies.
    pub fn slice_below(
        &self,
        offset: i64,
        max_bytes: usize,
        oversized_ok: bool,
        upper: i64,
        wait: crate::Wait,
    ) -> Result<Option<crate::LogSlice>> {
        let located: Option<Located> = self.with_log(|log| log.locate(offset))?;
        match located {
            Some(located) if offset < upper => located.slice(max_bytes, upper, oversized_ok, wait),
            _ => Ok(None),
        }
    }

    /// Appends a transaction marker (no sync). Blocking.
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        control: sluice_wire::batch::ControlType,
        coordinator_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        self.with_log(|log| {
            log.append_marker(producer_id, producer_epoch, control, coordinator_epoch, now_ms)
        })
    }

    /// Appends a marker that is its transaction's decision (no sync); see
    /// [`PartitionLog::append_deciding_marker`]. Blocking.
    pub fn append_deciding_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        control: sluice_wire::batch::ControlType,
        coordinator_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        self.with_log(|log| {
            log.append_deciding_marker(
                producer_id,
                producer_epoch,
                control,
                coordinator_epoch,
                now_ms,
            )
        })
    }
}

/// A few threads that only run syncs, for [`Partition::sync_each`]. A job never waits on
/// anything but its fsync (and another sync of the same partition), so a caller waiting for
/// its jobs cannot deadlock the pool, whatever the callers are; and no thread is created
/// per sync.
mod sync_threads {
    use std::sync::{mpsc, Mutex, OnceLock};

    /// Threads in the pool: enough for the partitions of a typical transaction to sync at once.
    const SYNC_THREADS: usize = 8;

    type Job = Box<dyn FnOnce() + Send>;

    static JOBS: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();

    /// Runs `job` on a sync thread, or here if the pool could not start.
    pub(super) fn run(job: Job) {
        let jobs = JOBS.get_or_init(start);
        let job = match jobs {
            Some(jobs) => match jobs.send(job) {
                Ok(()) => return,
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        job();
    }

    fn start() -> Option<mpsc::Sender<Job>> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = std::sync::Arc::new(Mutex::new(queue));
        let mut started = 0;
        for index in 0..SYNC_THREADS {
            let queue = std::sync::Arc::clone(&queue);
            let spawned =
                std::thread::Builder::new().name(format!("sluice-sync-{index}")).spawn(move || {
                    loop {
                        let next =
                            queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).recv();
                        match next {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if spawned.is_ok() {
                started += 1;
            }
        }
        (started > 0).then_some(jobs)
    }
}
