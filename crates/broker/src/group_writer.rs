//! Stores the coordinator's group states on a thread of its own.
//!
//! A store write syncs the file (and after an I/O error may first reopen it), so it must not
//! run under the coordinator's lock, which every JoinGroup, SyncGroup, Heartbeat and offset
//! commit takes, nor on an async worker, which serves other connections meanwhile. The
//! coordinator queues a group's state and goes on; the thread writes what is queued in one
//! synced transaction. Only each group's latest state is written: a state queued behind an
//! unwritten one of the same group replaces it, so the queue holds at most one entry per
//! group (`GROUPS_MAX`). Writes stay best effort, as they were when inline: a state that is
//! not stored costs its members a rebalance after a restart, never data.
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::store::{GroupRecord, Store};

/// The writer: a queue and the thread that empties it.
pub(crate) struct GroupWriter {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when states are queued, when a write ends and on close.
    changed: Condvar,
}

#[derive(Default)]
struct Queue {
    /// Group id -> the state to store (`None` removes the group).
    pending: BTreeMap<String, Option<GroupRecord>>,
    /// States taken from `pending` are being written.
    writing: bool,
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
    pub fn put(&self, group_id: &str, record: Option<GroupRecord>) {
        let mut queue = self.shared.lock();
        debug_assert!(!queue.closed, "a group state queued after close");
        queue.pending.insert(group_id.to_string(), record);
        drop(queue);
        self.shared.changed.notify_all();
    }

    /// Waits until every state queued before the call is written (or its write failed).
    pub fn flush(&self) {
        let mut queue = self.shared.lock();
        while !queue.pending.is_empty() || queue.writing {
            if self.thread.lock().unwrap_or_else(|p| p.into_inner()).is_none() {
                return; // closed: nothing writes any more
            }
            queue = self.shared.wait(queue);
        }
    }

    /// Writes what is queued, then stops the thread. Later states are not stored.
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
    fn drop(&mut self) {
        self.close();
    }
}

fn run(shared: &Shared, store: &Store) {
    loop {
        let batch = {
            let mut queue = shared.lock();
            loop {
                if !queue.pending.is_empty() {
                    queue.writing = true;
                    break std::mem::take(&mut queue.pending);
                }
                if queue.closed {
                    return;
                }
                queue = shared.wait(queue);
            }
        };
        let groups: Vec<(&str, Option<&GroupRecord>)> =
            batch.iter().map(|(id, record)| (id.as_str(), record.as_ref())).collect();
        if let Err(error) = store.put_groups(&groups) {
            let first = groups.first().map(|(id, _)| *id).unwrap_or_default();
            tracing::warn!(groups = groups.len(), first = %first, %error, "group state not stored");
        }
        shared.lock().writing = false;
        shared.changed.notify_all();
    }
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
        drop(writer); // close writes what is queued
        assert_eq!(store.groups().unwrap().get("c").map(|r| r.generation), Some(7));
    }
}
