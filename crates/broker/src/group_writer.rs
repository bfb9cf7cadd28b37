//! Stores the coordinator's group states on a thread of its own.
//!
//! A store write syncs the file (and after an I/O error may first reopen it), so it must not
//! run under the coordinator's lock, which every JoinGroup, SyncGroup, Heartbeat and offset
//! commit takes, nor on an async worker, which serves other connections meanwhile. The
//! coordinator queues a group's state and goes on; the thread writes what is queued in one
//! synced transaction. Only each group's latest state is written: a state queued behind an
//! unwritten one of the same group replaces it, so the queue holds at most one entry per
//! group (`GROUPS_MAX`). A write that fails (a full disk) is tried again a second later,
//! unless a newer state of the group was queued meanwhile. Writes stay best effort: a state
//! that is not stored (queued when the broker crashed, or after shutdown closed the writer)
//! costs its members a rebalance after a restart, never data.
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::store::{GroupRecord, Store};

/// How long the writer waits before it tries a failed write again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The writer: a queue and the thread that empties it.
pub(crate) struct GroupWriter {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when states are queued, when a write was tried and on close.
    changed: Condvar,
}

#[derive(Default)]
struct Queue {
    /// Group id -> the state to store (`None` removes the group).
    pending: BTreeMap<String, Option<GroupRecord>>,
    /// States queued so far, counted.
    queued: u64,
    /// Every state counted up to this has been tried (written, or failed and queued again).
    tried: u64,
    /// No more states come: write what is queued and stop.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, queue: MutexGuard<'a, Queue>) -> MutexGuard<'a, Queue> {
        self.changed.wait(queue).unwrap_or_else(|p| p.into_inner())
    }
}

impl GroupWriter {
    /// Starts the thread.
    pub fn start(store: Arc<Store>) -> crate::Result<GroupWriter> {
        let shared = Arc::new(Shared { queue: Mutex::default(), changed: Condvar::new() });
        let running = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("sluice-groups".into())
            .spawn(move || run(&running, &store))
            .map_err(|e| {
                crate::Error::Unavailable(format!("cannot start the group state writer: {e}"))
            })?;
        Ok(GroupWriter { shared, thread: Mutex::new(Some(thread)) })
    }

    /// Queues `record` as the group's state to store; `None` removes the stored group.
    /// After [`GroupWriter::close`] (a request still handled at shutdown) it is dropped.
    pub fn put(&self, group_id: &str, record: Option<GroupRecord>) {
        let mut queue = self.shared.lock();
        if queue.closed {
            tracing::debug!(group = %group_id, "group state not stored: the broker is stopping");
            return;
        }
        queue.pending.insert(group_id.to_string(), record);
        queue.queued += 1;
        drop(queue);
        self.shared.changed.notify_all();
    }

    /// Waits until every state queued before the call has been tried (written, or failed
    /// and queued again for later), or the writer stopped.
    pub fn flush(&self) {
        let mut queue = self.shared.lock();
        let wanted = queue.queued;
        while queue.tried < wanted {
            let stopped = self
                .thread
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .is_none_or(JoinHandle::is_finished);
            if stopped {
                return;
            }
            // Timed, so a writer thread that ended without a word is noticed.
            let (next, _) = self
                .shared
                .changed
                .wait_timeout(queue, RETRY_AFTER)
                .unwrap_or_else(|p| p.into_inner());
            queue = next;
        }
    }

    /// Writes what is queued (once; what fails then is dropped), then stops the thread.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_all();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("the group state writer stopped with a panic");
            }
        }
    }
}

impl Drop for GroupWriter {
    /// Closes: the thread holds the store, which a test may open again next.
    fn drop(&mut self) {
        self.close();
    }
}

fn run(shared: &Shared, store: &Store) {
    // Set from a failed write until one succeeds: the log says so once each way.
    let mut failing = false;
    loop {
        let (batch, counted, closing) = {
            let mut queue = shared.lock();
            loop {
                if !queue.pending.is_empty() {
                    break (std::mem::take(&mut queue.pending), queue.queued, queue.closed);
                }
                if queue.closed {
                    return;
                }
                queue = shared.wait(queue);
            }
        };
        let failed = write(store, &batch, failing);
        if failing && !failed {
            tracing::info!("group states are stored again");
        }
        failing = failed;
        let mut queue = shared.lock();
        queue.tried = queue.tried.max(counted);
        if failed && !closing {
            // Tried again later, each unless a newer state of its group came meanwhile.
            for (group_id, record) in batch {
                queue.pending.entry(group_id).or_insert(record);
            }
        }
        shared.changed.notify_all();
        if failed && !queue.closed {
            let (queue, _) = shared
                .changed
                .wait_timeout_while(queue, RETRY_AFTER, |queue| !queue.closed)
                .unwrap_or_else(|p| p.into_inner());
            drop(queue);
        }
    }
}

/// Stores `batch` in one transaction; whether that failed (a WARN line unless `failing`
/// already, when the last write failed too).
fn write(store: &Store, batch: &BTreeMap<String, Option<GroupRecord>>, failing: bool) -> bool {
    let groups: Vec<(&str, Option<&GroupRecord>)> =
        batch.iter().map(|(id, record)| (id.as_str(), record.as_ref())).collect();
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.put_groups(&groups)));
    let error = match outcome {
        Ok(Ok(())) => return false,
        Ok(Err(error)) => error.to_string(),
        Err(_) => "the store write panicked".to_string(),
    };
    let first = groups.first().map(|(id, _)| *id).unwrap_or_default();
    if failing {
        tracing::debug!(groups = groups.len(), first = %first, %error, "group state not stored");
    } else {
        tracing::warn!(groups = groups.len(), first = %first, %error,
            "group states not stored; tried again every second until they are");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(generation: i32) -> GroupRecord {
        GroupRecord {
            empty_since_ms: None,
            generation,
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            leader: "m".into(),
            members: Vec::new(),
        }
    }

    #[test]
    fn the_latest_state_of_each_group_is_stored_and_removals_win_over_earlier_states() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("meta.redb")).unwrap());
        let writer = GroupWriter::start(Arc::clone(&store)).unwrap();
        for generation in 1..=50 {
            writer.put("a", Some(record(generation)));
            writer.put("b", Some(record(generation)));
        }
        writer.put("b", None);
        writer.flush();
        let stored = store.groups().unwrap();
        assert_eq!(stored.get("a").map(|r| r.generation), Some(50));
        assert!(!stored.contains_key("b"), "removed last");
        writer.put("c", Some(record(7)));
        writer.close(); // writes what is queued
        assert_eq!(store.groups().unwrap().get("c").map(|r| r.generation), Some(7));
        writer.put("d", Some(record(8)));
        writer.flush(); // returns: nothing writes any more
        assert!(!store.groups().unwrap().contains_key("d"), "queued after close");
    }

    /// A write that fails (a full disk) is tried again, unless a newer state replaced it.
    #[test]
    fn a_failed_write_is_tried_again_once_there_is_room() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let full = Arc::new(AtomicBool::new(false));
        let store =
            Arc::new(crate::store::tests::open_on_full_disk(&dir.path().join("meta.redb"), &full));
        let writer = GroupWriter::start(Arc::clone(&store)).unwrap();
        full.store(true, Ordering::Release);
        writer.put("a", Some(record(1)));
        writer.flush();
        writer.put("a", Some(record(2)));
        writer.flush();
        // (This backend fails the reopen's own writes too, which leaves no handle to read
        // with until a reopen succeeds; a real full disk waits for room before reopening.)
        let stored = |store: &Store| store.groups().ok().and_then(|g| g.get("a").cloned());
        assert_eq!(stored(&store), None, "written on a full disk");
        full.store(false, Ordering::Release);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while stored(&store).map(|r| r.generation) != Some(2) {
            assert!(std::time::Instant::now() < deadline, "never tried again");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        writer.close();
    }
}
