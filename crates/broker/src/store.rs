//! The metadata store: topics, committed offsets and the cluster id, in one redb file
//! (`<data>/meta.redb`).
//!
//! Why redb: every write is an ACID transaction synced before it returns (copy-on-write
//! B-trees with a checksummed commit slot), so a crash leaves either the old or the new state
//! and never a torn one. Metadata writes are rare next to log appends, so one sync each is
//! affordable; the hot path (produce) never touches this file.
//!
//! After a failed commit (a full disk) redb refuses every later write until it is reopened;
//! the store reopens it before its next write (see [`Store::reopen`]).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::limits::STORE_REOPEN_FREE_BYTES_MIN;
use crate::{Error, Result};

const TOPICS: TableDefinition<&str, &[u8]> = TableDefinition::new("topics");
const OFFSETS: TableDefinition<&str, &[u8]> = TableDefinition::new("offsets");
const CLUSTER: TableDefinition<&str, &str> = TableDefinition::new("cluster");
const TRANSACTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("transactions");
const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("groups");
/// Dynamic configs (`crate::dynamic_config`): `"<kind>\0<resource name>"` -> JSON object.
const CONFIGS: TableDefinition<&str, &[u8]> = TableDefinition::new("configs");

/// A topic as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// The topic id (a UUID, as Kafka's topic ids are).
    pub id: uuid::Uuid,
    /// Partition count.
    pub partitions: i32,
    /// Topic-level config overrides, Kafka-named.
    pub configs: BTreeMap<String, String>,
}

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetRecord {
    /// The committed offset (the next record to consume).
    pub offset: i64,
    /// The leader epoch the client sent, -1 when none.
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: Option<String>,
    /// When it was committed, epoch milliseconds.
    pub commit_timestamp_ms: i64,
}

/// The states of a transaction, as Kafka's DescribeTransactions names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    /// No transaction open.
    Empty,
    /// Partitions or offsets were added; records may be in the log.
    Ongoing,
    /// EndTxn(commit) is writing markers.
    PrepareCommit,
    /// EndTxn(abort) or a timeout is writing markers.
    PrepareAbort,
    /// The last transaction committed.
    CompleteCommit,
    /// The last transaction aborted.
    CompleteAbort,
}

impl TxnState {
    /// Kafka's name for the state.
    pub fn kafka_name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }
}

/// An offset committed inside a transaction, visible once the transaction commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOffset {
    /// The consumer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// What to commit.
    pub record: OffsetRecord,
}

/// A transactional id's coordinator state as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRecord {
    /// The producer id bound to the transactional id.
    pub producer_id: i64,
    /// Its current epoch.
    pub producer_epoch: i16,
    /// `transaction.timeout.ms` the producer asked for.
    pub timeout_ms: i32,
    /// Where the transaction is.
    pub state: TxnState,
    /// Partitions added to the open transaction.
    pub partitions: std::collections::BTreeSet<(String, i32)>,
    /// Groups added with AddOffsetsToTxn.
    pub groups: std::collections::BTreeSet<String>,
    /// Offsets committed with TxnOffsetCommit, applied when the transaction commits.
    pub pending_offsets: Vec<PendingOffset>,
    /// When the open transaction started (its first AddPartitions/AddOffsets), epoch ms.
    pub started_ms: i64,
    /// The last state change, epoch ms.
    pub updated_ms: i64,
    /// In a prepare state: each partition's log end offset when the transaction was
    /// decided. Every record of the transaction is below it and its marker at or after it,
    /// so recovery can tell a marker already in the log from one still to write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prepared_ends: Vec<(String, i32, i64)>,
}

/// A Stable consumer group as stored, so members keep their generation across a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// The generation.
    pub generation: i32,
    /// The protocol type (`consumer`).
    pub protocol_type: String,
    /// The chosen assignor.
    pub protocol: String,
    /// The leader's member id.
    pub leader: String,
    /// Every member.
    pub members: Vec<GroupMemberRecord>,
    /// When the group lost its last member (epoch ms); `None` while it has members. An
    /// empty group's offsets expire `offsets.retention.minutes` after this (KIP-211).
    #[serde(default)]
    pub empty_since_ms: Option<i64>,
}

/// One member of a stored group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMemberRecord {
    /// Member id.
    pub member_id: String,
    /// Static instance id (KIP-345).
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: u64,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: u64,
    /// Protocols with their metadata.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// The member's assignment.
    pub assignment: Vec<u8>,
}

/// Opens the database file (the store's `path`): [`Database::create`], or a test backend.
type Opener =
    Box<dyn Fn(&Path) -> std::result::Result<Database, redb::DatabaseError> + Send + Sync>;

/// The store.
pub struct Store {
    path: PathBuf,
    opener: Opener,
    /// The database; `None` only while a reopen failed. Every transaction holds the read
    /// lock from its start until it ended, and the counters of [`GroupCommit`] that it moves
    /// are moved before it lets go, so a reopen (the write lock) sees them consistent.
    db: RwLock<Option<Database>>,
    /// Set when a transaction failed in a way that leaves redb refusing every later one
    /// (an I/O error): the next transaction reopens the database first.
    needs_reopen: AtomicBool,
    /// Set from the first such failure until a write commits again: the start and the end
    /// of a run of failures are logged, not each failure.
    writes_failing: AtomicBool,
    /// Transaction state committed unsynced and acted on, until a synced commit covers it:
    /// a reopen writes it again (see [`Store::reopen`]).
    unsynced_writes: std::sync::Mutex<UnsyncedWrites>,
    /// Ranges `(first, last)` of commit numbers a reopen rolled back: every commit after the
    /// last synced one when it ran. The remembered ones were written again; a caller still
    /// waiting in [`Store::sync_through`] for any other one learns that it is lost. One range
    /// per reopen, the last `ROLLED_BACK_RANGES_MAX`.
    rolled_back: std::sync::Mutex<Vec<(u64, u64)>>,
    /// Group commit of synced transaction-state writes (see [`Store::put_transaction`]).
    commits: GroupCommit,
    /// Transaction markers appended but not yet synced: `(partition, end offset)`. Every
    /// synced commit syncs them first (see [`Store::defer_marker_syncs`]).
    unsynced_markers: std::sync::Mutex<Vec<(std::sync::Arc<sluice_log::Partition>, i64)>>,
    /// Held by [`Store::sync_markers`] from taking the registered markers until their syncs
    /// returned, so a synced commit's own call waits for markers another call took.
    marker_syncs: std::sync::Mutex<()>,
}

/// What unsynced transaction-state commits wrote, each key's latest value with the number
/// of the commit that wrote it. Kept only while that number is above `GroupCommit::synced`,
/// so it holds at most one entry per transactional id and per offset key, and usually
/// little: every synced commit covers what came before it.
#[derive(Default)]
struct UnsyncedWrites {
    /// Transactional id -> (commit number, its record's bytes; `None`: removed).
    transactions: BTreeMap<String, (u64, Option<Vec<u8>>)>,
    /// Offset key -> (commit number, its record's bytes).
    offsets: BTreeMap<String, (u64, Vec<u8>)>,
    /// `synced` when the entries it covers were last dropped.
    pruned_at: u64,
}

impl UnsyncedWrites {
    /// Drops the entries of commits up to `synced`.
    fn prune(&mut self, synced: u64) {
        if self.pruned_at >= synced {
            return;
        }
        self.transactions.retain(|_, (number, _)| *number > synced);
        self.offsets.retain(|_, (number, _)| *number > synced);
        self.pruned_at = synced;
    }
}

/// Counts unsynced commits and the ones a sync has covered.
#[derive(Default)]
struct GroupCommit {
    /// Transaction-state commits made so far; each takes the next number inside its write
    /// transaction, so numbers follow commit order.
    written: std::sync::atomic::AtomicU64,
    /// Every commit numbered up to this is synced.
    synced: std::sync::atomic::AtomicU64,
    /// Held while a sync runs; waiters queue here.
    lock: std::sync::Mutex<()>,
}

/// Reopens whose rolled-back commit numbers are kept (see `Store::rolled_back`): a commit
/// waits for one sync, during which a reopen needs an I/O error and room again first.
const ROLLED_BACK_RANGES_MAX: usize = 64;

fn store_error(what: &'static str) -> impl Fn(String) -> Error {
    move |e| Error::Store(format!("{what}: {e}"))
}

/// Bytes free to unprivileged writers on the file system holding `path`'s folder;
/// `u64::MAX` when that cannot be read (the reopen is tried, rather than never).
fn free_bytes(path: &Path) -> u64 {
    let folder = path.parent().unwrap_or(path);
    match rustix::fs::statvfs(folder) {
        Ok(stats) => stats.f_bavail.saturating_mul(stats.f_frsize),
        Err(_) => u64::MAX,
    }
}

fn offset_key(group: &str, topic: &str, partition: i32) -> String {
    // NUL cannot appear in group ids sent by clients we accept or in topic names.
    format!("{group}\0{topic}\0{partition}")
}

impl Store {
    /// Opens or creates the store file.
    pub fn open(path: &Path) -> Result<Store> {
        Self::open_with(path, Box::new(|path| Database::create(path)))
    }

    /// Opens the store through `opener` (the same on every reopen).
    fn open_with(path: &Path, opener: Opener) -> Result<Store> {
        let db = opener(path).map_err(|e| Error::Store(format!("open {}: {e}", path.display())))?;
        let store = Store {
            path: path.to_path_buf(),
            opener,
            db: RwLock::new(Some(db)),
            needs_reopen: AtomicBool::new(false),
            writes_failing: AtomicBool::new(false),
            unsynced_writes: Default::default(),
            rolled_back: Default::default(),
            commits: GroupCommit::default(),
            unsynced_markers: Default::default(),
            marker_syncs: Default::default(),
        };
        store.write(|tx| {
            tx.open_table(TOPICS).map_err(|e| e.to_string())?;
            tx.open_table(OFFSETS).map_err(|e| e.to_string())?;
            tx.open_table(CLUSTER).map_err(|e| e.to_string())?;
            tx.open_table(TRANSACTIONS).map_err(|e| e.to_string())?;
            tx.open_table(GROUPS).map_err(|e| e.to_string())?;
            tx.open_table(CONFIGS).map_err(|e| e.to_string())?;
            Ok(())
        })?;
        Ok(store)
    }

    /// The database, for one write: reopened first if an earlier write failed with an I/O
    /// error.
    fn db(&self) -> Result<RwLockReadGuard<'_, Option<Database>>> {
        if self.needs_reopen.load(Ordering::Acquire) {
            self.reopen()?;
        }
        Ok(self.db.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// The database, for one read: redb goes on reading after an I/O error, so the handle
    /// in use serves it; reopened first only when a reopen failed and left none.
    fn db_to_read(&self) -> Result<RwLockReadGuard<'_, Option<Database>>> {
        let db = self.db.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        if db.is_some() {
            return Ok(db);
        }
        drop(db);
        self.db()
    }

    /// Closes and reopens the database after an I/O error (redb refuses every write
    /// transaction after one until then), once no transaction runs. Refused, and tried again
    /// at the next write, while the disk has less than `STORE_REOPEN_FREE_BYTES_MIN` free
    /// (the handle in use goes on serving reads meanwhile). redb rolls back to its last
    /// synced commit on reopen, which would take back transaction state committed unsynced
    /// that the coordinator has acted on (a completion with its offsets): that state is
    /// written again, synced, before any other transaction runs ([`Store::replay_unsynced`]).
    fn reopen(&self) -> Result<()> {
        let mut db = self.db.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !self.needs_reopen.load(Ordering::Acquire) {
            return Ok(()); // another caller reopened it meanwhile
        }
        // Also with no handle (a reopen or its replay failed): reads try the reopen too, and
        // must not each run one on a disk that is still full.
        let free = free_bytes(&self.path);
        if free < STORE_REOPEN_FREE_BYTES_MIN {
            return Err(Error::Store(format!(
                "no space: {free} bytes free for {}; metadata writes resume once {STORE_REOPEN_FREE_BYTES_MIN} are (free disk space)",
                self.path.display()
            )));
        }
        // The old handle must be closed first: it holds the file's lock.
        drop(db.take());
        let reopened = (self.opener)(&self.path).map_err(|e| {
            Error::Store(format!(
                "reopen {} after an I/O error: {e} (free disk space; it is tried again at the next write)",
                self.path.display()
            ))
        })?;
        // redb rolled back every commit after the last synced one.
        let commits = &self.commits;
        let first = commits.synced.load(Ordering::Acquire) + 1;
        let last = commits.written.load(Ordering::Acquire);
        if first <= last {
            let mut rolled_back =
                self.rolled_back.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            // A waiter waits through one sync, so only the last few reopens can concern one.
            if rolled_back.len() >= ROLLED_BACK_RANGES_MAX {
                rolled_back.remove(0);
            }
            rolled_back.push((first, last));
        }
        *db = Some(reopened);
        // Until the replay commits, the next write reopens (and replays) again, and reads
        // fail rather than see the rolled-back state.
        if let Err(error) = self.replay_unsynced(&db) {
            *db = None;
            return Err(error);
        }
        self.needs_reopen.store(false, Ordering::Release);
        tracing::debug!(path = %self.path.display(), "metadata store reopened after an I/O error");
        Ok(())
    }

    /// Writes again, in one synced commit, the transaction state that unsynced commits
    /// wrote and no synced commit has covered: after a reopen the file holds the state of
    /// its last synced commit, and the coordinator has acted on these.
    fn replay_unsynced(&self, db: &Option<Database>) -> Result<()> {
        let synced = self.commits.synced.load(Ordering::Acquire);
        let (transactions, offsets) = {
            let mut writes =
                self.unsynced_writes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            writes.prune(synced);
            (writes.transactions.clone(), writes.offsets.clone())
        };
        if transactions.is_empty() && offsets.is_empty() {
            return Ok(());
        }
        self.write_in(db, redb::Durability::Immediate, |tx| {
            let mut table = tx.open_table(TRANSACTIONS).map_err(|e| e.to_string())?;
            for (id, (_, bytes)) in &transactions {
                match bytes {
                    Some(bytes) => {
                        table.insert(id.as_str(), bytes.as_slice()).map_err(|e| e.to_string())?;
                    }
                    None => {
                        table.remove(id.as_str()).map_err(|e| e.to_string())?;
                    }
                }
            }
            let mut table = tx.open_table(OFFSETS).map_err(|e| e.to_string())?;
            for (key, (_, bytes)) in &offsets {
                table.insert(key.as_str(), bytes.as_slice()).map_err(|e| e.to_string())?;
            }
            Ok(())
        })?;
        // The synced commit moved `synced` over every commit those entries came from.
        debug_assert!(
            transactions
                .values()
                .map(|(n, _)| *n)
                .chain(offsets.values().map(|(n, _)| *n))
                .all(|number| number <= self.commits.synced.load(Ordering::Acquire)),
            "a replayed commit is still counted unsynced"
        );
        tracing::info!(
            path = %self.path.display(),
            transactions = transactions.len(),
            offsets = offsets.len(),
            "metadata store reopened: transaction state not yet synced was written again"
        );
        Ok(())
    }

    /// Notes a redb error that leaves the database refusing every later transaction, and
    /// words it for the caller.
    fn failed(&self, what: &str, error: impl Into<redb::Error>) -> Error {
        let error: redb::Error = error.into();
        let refusing = matches!(error, redb::Error::Io(_) | redb::Error::PreviousIo);
        if refusing {
            self.needs_reopen.store(true, Ordering::Release);
            if !self.writes_failing.swap(true, Ordering::AcqRel) {
                tracing::error!(
                    path = %self.path.display(),
                    %error,
                    "metadata store writes fail (offset commits, topic changes, transactions) until one commits; reads go on"
                );
            }
        }
        Error::Store(format!("{what}: {error}"))
    }

    /// Runs `f` in a read transaction.
    fn read<T>(&self, f: impl FnOnce(&redb::ReadTransaction) -> Result<T>) -> Result<T> {
        let db = self.db_to_read()?;
        let db = db.as_ref().ok_or_else(|| Error::Store("metadata store not open".into()))?;
        let tx = db.begin_read().map_err(|e| self.failed("read", e))?;
        f(&tx)
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> std::result::Result<T, String>,
    ) -> Result<T> {
        self.write_with(redb::Durability::Immediate, f)
    }

    /// A write that is synced before it returns (`Immediate`) or only with the next synced
    /// write (`None`), for state a crash may lose because something else recovers it.
    fn write_with<T>(
        &self,
        durability: redb::Durability,
        f: impl FnOnce(&redb::WriteTransaction) -> std::result::Result<T, String>,
    ) -> Result<T> {
        let db = self.db()?;
        self.write_in(&db, durability, f)
    }

    /// [`Store::write_with`] on a database the caller holds (to move counters before a
    /// reopen can run).
    fn write_in<T>(
        &self,
        db: &Option<Database>,
        durability: redb::Durability,
        f: impl FnOnce(&redb::WriteTransaction) -> std::result::Result<T, String>,
    ) -> Result<T> {
        let db = db.as_ref().ok_or_else(|| Error::Store("metadata store not open".into()))?;
        let mut tx = db.begin_write().map_err(|e| self.failed("write", e))?;
        let synced = !matches!(durability, redb::Durability::None);
        // Commits take their numbers inside their write transactions, one at a time: every
        // commit numbered up to this has committed, and this one, synced, makes them durable.
        let before = self.commits.written.load(Ordering::Acquire);
        if synced {
            // Under the write lock: every unsynced commit before this one has registered
            // its markers by now, and none commits until this one has.
            self.sync_markers()?;
        }
        tx.set_durability(durability);
        let value = f(&tx).map_err(store_error("write"))?;
        tx.commit().map_err(|e| self.failed("commit", e))?;
        if synced {
            self.commits.synced.fetch_max(before, Ordering::AcqRel);
        }
        if self.writes_failing.load(Ordering::Acquire)
            && self.writes_failing.swap(false, Ordering::AcqRel)
        {
            tracing::info!(path = %self.path.display(), "metadata store writes work again");
        }
        Ok(value)
    }

    /// Registers transaction markers appended without a sync. The completed transaction
    /// state written after them may be written unsynced, and no synced commit happens
    /// before they are synced ([`Store::sync_markers`]), so the store never durably holds a
    /// completion whose markers a crash could take back. Until then a marker's partition
    /// keeps its high watermark below it; a produce's sync of the partition covers it too.
    pub fn defer_marker_syncs(&self, markers: Vec<(std::sync::Arc<sluice_log::Partition>, i64)>) {
        if markers.is_empty() {
            return;
        }
        let mut pending =
            self.unsynced_markers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        pending.extend(markers);
    }

    /// Syncs every marker registered so far (a partition already synced past its marker
    /// costs nothing). On failure the markers stay registered and the error is returned.
    pub fn sync_markers(&self) -> Result<()> {
        // Held until the syncs return: a synced commit that calls this meanwhile must not
        // find the registry empty and commit before those markers are durable.
        let _syncing = self.marker_syncs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let registered = std::mem::take(
            &mut *self.unsynced_markers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        // One sync per partition, up to its last marker, and none where a produce's sync
        // already covered them (the usual case: no sync thread is woken for nothing).
        let mut markers: Vec<(std::sync::Arc<sluice_log::Partition>, i64)> = Vec::new();
        for (partition, end) in registered {
            if partition.synced_offset() >= end {
                continue;
            }
            match markers.iter_mut().find(|(p, _)| std::sync::Arc::ptr_eq(p, &partition)) {
                Some((_, known)) => *known = (*known).max(end),
                None => markers.push((partition, end)),
            }
        }
        if markers.is_empty() {
            return Ok(());
        }
        let mut failed = Vec::new();
        let mut first_error = None;
        for (outcome, marker) in sluice_log::Partition::sync_each(&markers).into_iter().zip(markers)
        {
            if let Err(error) = outcome {
                first_error.get_or_insert(error);
                failed.push(marker);
            }
        }
        match first_error {
            None => Ok(()),
            Some(error) => {
                self.defer_marker_syncs(failed);
                Err(Error::Store(format!("transaction marker sync: {error}")))
            }
        }
    }

    /// Whether a registered marker's partition is not yet synced past it: what
    /// [`Store::sync_markers`] would sync. Cheap (no I/O), for deciding whether to call it.
    pub fn markers_unsynced(&self) -> bool {
        let registered =
            self.unsynced_markers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        registered.iter().any(|(partition, end)| partition.synced_offset() < *end)
    }

    /// The cluster id, created on first start.
    pub fn cluster_id(&self) -> Result<String> {
        self.write(|tx| {
            let mut table = tx.open_table(CLUSTER).map_err(|e| e.to_string())?;
            if let Some(id) = table.get("cluster_id").map_err(|e| e.to_string())? {
                return Ok(id.value().to_string());
            }
            let id = uuid::Uuid::new_v4().simple().to_string();
            // Kafka cluster ids are 22-character base64 UUIDs; a hex UUID is as unique.
            table.insert("cluster_id", id.as_str()).map_err(|e| e.to_string())?;
            Ok(id)
        })
    }

    /// Allocates a block of `count` producer ids and returns the first. Ids survive
    /// restarts, so a producer id is never handed out twice.
    pub fn allocate_producer_ids(&self, count: i64) -> Result<i64> {
        self.write(|tx| {
            let mut table = tx.open_table(CLUSTER).map_err(|e| e.to_string())?;
            let next: i64 = match table.get("next_producer_id").map_err(|e| e.to_string())? {
                Some(v) => v.value().parse().map_err(|e| format!("next_producer_id: {e}"))?,
                None => 0,
            };
            let after = (next + count).to_string();
            table.insert("next_producer_id", after.as_str()).map_err(|e| e.to_string())?;
            Ok(next)
        })
    }

    /// Every topic.
    pub fn topics(&self) -> Result<BTreeMap<String, TopicRecord>> {
        self.read(|tx| {
            let table = tx.open_table(TOPICS).map_err(|e| Error::Store(e.to_string()))?;
            let mut topics = BTreeMap::new();
            for entry in table.iter().map_err(|e| Error::Store(e.to_string()))? {
                let (name, value) = entry.map_err(|e| Error::Store(e.to_string()))?;
                let record: TopicRecord = serde_json::from_slice(value.value())
                    .map_err(|e| Error::Store(format!("topic {}: {e}", name.value())))?;
                topics.insert(name.value().to_string(), record);
            }
            Ok(topics)
        })
    }

    /// Writes (creates or replaces) a topic.
    pub fn put_topic(&self, name: &str, record: &TopicRecord) -> Result<()> {
        let bytes = serde_json::to_vec(record).map_err(|e| Error::Store(e.to_string()))?;
        self.write(|tx| {
            let mut table = tx.open_table(TOPICS).map_err(|e| e.to_string())?;
            table.insert(name, bytes.as_slice()).map_err(|e| e.to_string())?;
            Ok(())
        })
    }

    /// Removes a topic and every committed offset for it.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        self.write(|tx| {
            let mut table = tx.open_table(TOPICS).map_err(|e| e.to_string())?;
            table.remove(name).map_err(|e| e.to_string())?;
            let mut offsets = tx.open_table(OFFSETS).map_err(|e| e.to_string())?;
            let needle = format!("\0{name}\0");
            let doomed: Vec<String> = offsets
                .iter()
                .map_err(|e| e.to_string())?
                .filter_map(|e| e.ok())
                .map(|(k, _)| k.value().to_string())
                .filter(|k| k.contains(&needle))
                .collect();
            for key in doomed {
                offsets.remove(key.as_str()).map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }

    /// Commits offsets for one group in one transaction.
    pub fn commit_offsets(
        &self,
        group: &str,
        offsets: &[(String, i32, OffsetRecord)],
    ) -> Result<()> {
        let encoded: Vec<(String, Vec<u8>)> = offsets
            .iter()
            .map(|(topic, partition, record)| {
                let bytes = serde_json::to_vec(record).map_err(|e| Error::Store(e.to_string()))?;
                Ok((offset_key(group, topic, *partition), bytes))
            })
            .collect::<Result<_>>()?;
        self.write(|tx| {
            let mut table = tx.open_table(OFFSETS).map_err(|e| e.to_string())?;
            for (key, bytes) in &encoded {
                table.insert(key.as_str(), bytes.as_slice()).map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }

    /// Returns once the unsynced commit numbered `number` is synced. Group commit, as the
    /// log's: the first waiter takes the lock, notes the last number taken, and makes one
    /// empty synced commit, which persists every commit before it (redb's
    /// `Durability::None` commits are made durable by the next durable one, and a commit
    /// that took its number has committed before the empty one begins: redb runs one write
    /// transaction at a time); the waiters that queued meanwhile find their commits covered
    /// and return without a sync of their own.
    ///
    /// A commit that a reopen rolled back meanwhile (an I/O error elsewhere, then room again)
    /// is not synced by anything that follows: that is an error.
    fn sync_through(&self, number: u64) -> Result<()> {
        let commits = &self.commits;
        if commits.synced.load(Ordering::Acquire) >= number {
            return self.not_rolled_back(number);
        }
        let _guard = commits.lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if commits.synced.load(Ordering::Acquire) >= number {
            return self.not_rolled_back(number);
        }
        let db = self.db()?;
        let target = commits.written.load(Ordering::Acquire);
        debug_assert!(target >= number, "commit {number} counted after {target}");
        self.write_in(&db, redb::Durability::Immediate, |_| Ok(()))?;
        commits.synced.fetch_max(target, Ordering::AcqRel);
        self.not_rolled_back(number)
    }

    /// An error if a reopen rolled back the commit numbered `number`: one of the shared-sync
    /// commits of [`Store::put_transaction`], the only ones waited for here (a remembered
    /// unsynced commit in such a range was written again by the reopen).
    fn not_rolled_back(&self, number: u64) -> Result<()> {
        let rolled_back = self.rolled_back.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if rolled_back.iter().any(|&(first, last)| (first..=last).contains(&number)) {
            return Err(Error::Store(format!(
                "a write to {} was undone by reopening it after an I/O error before it was synced; try again",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// One synced commit: every commit before it is durable once this returns (and every
    /// deferred marker is synced first, as before any synced commit).
    pub fn sync(&self) -> Result<()> {
        self.write(|_| Ok(()))
    }

    /// Every transactional id's coordinator state.
    pub fn transactions(&self) -> Result<BTreeMap<String, TxnRecord>> {
        self.read(|tx| {
            let table = tx.open_table(TRANSACTIONS).map_err(|e| Error::Store(e.to_string()))?;
            let mut found = BTreeMap::new();
            for entry in table.iter().map_err(|e| Error::Store(e.to_string()))? {
                let (id, value) = entry.map_err(|e| Error::Store(e.to_string()))?;
                let record: TxnRecord = serde_json::from_slice(value.value())
                    .map_err(|e| Error::Store(format!("transaction {}: {e}", id.value())))?;
                found.insert(id.value().to_string(), record);
            }
            Ok(found)
        })
    }

    /// Writes a transactional id's state and, in the same store transaction, commits
    /// `offsets` (a committed transaction's offsets become visible with its completion).
    /// `None` removes the transactional id. With `durable` false the write is not synced
    /// (see `crate::transactions` for which writes may be lost); with `durable` true it
    /// returns once synced: with a synced commit of its own when no sync is running, and
    /// otherwise sharing one sync with every durable write made meanwhile (each such write
    /// commits unsynced, then [`Store::sync_through`] covers it).
    pub fn put_transaction(
        &self,
        transactional_id: &str,
        record: Option<&TxnRecord>,
        offsets: &[PendingOffset],
        durable: bool,
    ) -> Result<()> {
        let bytes = record
            .map(|r| serde_json::to_vec(r).map_err(|e| Error::Store(e.to_string())))
            .transpose()?;
        let encoded: Vec<(String, Vec<u8>)> = offsets
            .iter()
            .map(|p| {
                let bytes =
                    serde_json::to_vec(&p.record).map_err(|e| Error::Store(e.to_string()))?;
                Ok((offset_key(&p.group, &p.topic, p.partition), bytes))
            })
            .collect::<Result<_>>()?;
        let commits = &self.commits;
        // Each commit takes its number inside its write transaction, so numbers follow
        // redb's commit order: a synced commit covers every number before its own.
        let body = |tx: &redb::WriteTransaction| {
            let mut table = tx.open_table(TRANSACTIONS).map_err(|e| e.to_string())?;
            match &bytes {
                Some(bytes) => {
                    table.insert(transactional_id, bytes.as_slice()).map_err(|e| e.to_string())?;
                }
                None => {
                    table.remove(transactional_id).map_err(|e| e.to_string())?;
                }
            }
            let mut table = tx.open_table(OFFSETS).map_err(|e| e.to_string())?;
            for (key, bytes) in &encoded {
                table.insert(key.as_str(), bytes.as_slice()).map_err(|e| e.to_string())?;
            }
            Ok(commits.written.fetch_add(1, Ordering::AcqRel) + 1)
        };
        if !durable {
            // The caller acts on this write once it returns: it is remembered while the
            // database is held, so that a reopen (which waits for it) writes it again.
            let db = self.db()?;
            let number = self.write_in(&db, redb::Durability::None, body)?;
            self.remember_unsynced(number, transactional_id, bytes, encoded);
            return Ok(());
        }
        let alone = match commits.lock.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        if let Some(_guard) = alone {
            // No sync is running: one synced commit carries this write.
            let db = self.db()?;
            let number = self.write_in(&db, redb::Durability::Immediate, body)?;
            commits.synced.fetch_max(number, Ordering::AcqRel);
            return Ok(());
        }
        // Committed unsynced, then covered by a shared sync. If that sync fails, or a reopen
        // rolled the commit back first, the caller is told and does not act on the write.
        // (A sync that fails without an I/O error, a deferred marker's, leaves the commit in
        // place for a later synced commit to make durable: see docs/design/metadata.md.)
        let number = {
            let db = self.db()?;
            self.write_in(&db, redb::Durability::None, body)?
        };
        self.sync_through(number)
    }

    /// Notes what an unsynced commit numbered `number` wrote (see [`UnsyncedWrites`]).
    fn remember_unsynced(
        &self,
        number: u64,
        transactional_id: &str,
        bytes: Option<Vec<u8>>,
        offsets: Vec<(String, Vec<u8>)>,
    ) {
        let synced = self.commits.synced.load(Ordering::Acquire);
        let mut writes =
            self.unsynced_writes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        writes.prune(synced);
        if number <= synced {
            return; // a sync covered it already
        }
        // Commits of one transactional id run one at a time; an offset key may be written
        // by two ids' commits at once, and the later commit's value is the one that stays.
        let newer = |held: Option<u64>| held.is_none_or(|held| held < number);
        if newer(writes.transactions.get(transactional_id).map(|(n, _)| *n)) {
            writes.transactions.insert(transactional_id.to_string(), (number, bytes));
        }
        for (key, bytes) in offsets {
            if newer(writes.offsets.get(&key).map(|(n, _)| *n)) {
                writes.offsets.insert(key, (number, bytes));
            }
        }
    }

    /// The dynamic configs of one kind of resource (`"broker"`, `"group"`): resource name ->
    /// configs.
    pub fn dynamic_configs(
        &self,
        kind: &str,
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        let prefix = format!("{kind}\0");
        self.read(|tx| {
            let table = tx.open_table(CONFIGS).map_err(|e| Error::Store(e.to_string()))?;
            let mut found = BTreeMap::new();
            for entry in table.iter().map_err(|e| Error::Store(e.to_string()))? {
                let (key, value) = entry.map_err(|e| Error::Store(e.to_string()))?;
                let Some(name) = key.value().strip_prefix(&prefix) else { continue };
                let configs: BTreeMap<String, String> = serde_json::from_slice(value.value())
                    .map_err(|e| Error::Store(format!("{kind} {name:?} configs: {e}")))?;
                found.insert(name.to_string(), configs);
            }
            Ok(found)
        })
    }

    /// Replaces one resource's dynamic configs (an empty set removes the entry), synced.
    pub fn put_dynamic_configs(
        &self,
        kind: &str,
        name: &str,
        configs: &BTreeMap<String, String>,
    ) -> Result<()> {
        let key = format!("{kind}\0{name}");
        let bytes = serde_json::to_vec(configs).map_err(|e| Error::Store(e.to_string()))?;
        self.write(|tx| {
            let mut table = tx.open_table(CONFIGS).map_err(|e| e.to_string())?;
            if configs.is_empty() {
                table.remove(key.as_str()).map_err(|e| e.to_string())?;
            } else {
                table.insert(key.as_str(), bytes.as_slice()).map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }

    /// Every stored group.
    pub fn groups(&self) -> Result<BTreeMap<String, GroupRecord>> {
        self.read(|tx| {
            let table = tx.open_table(GROUPS).map_err(|e| Error::Store(e.to_string()))?;
            let mut found = BTreeMap::new();
            for entry in table.iter().map_err(|e| Error::Store(e.to_string()))? {
                let (id, value) = entry.map_err(|e| Error::Store(e.to_string()))?;
                let record: GroupRecord = serde_json::from_slice(value.value())
                    .map_err(|e| Error::Store(format!("group {}: {e}", id.value())))?;
                found.insert(id.value().to_string(), record);
            }
            Ok(found)
        })
    }

    /// Writes groups (or removes those given `None`) in one synced transaction.
    pub fn put_groups(&self, groups: &[(&str, Option<&GroupRecord>)]) -> Result<()> {
        let mut encoded = Vec::with_capacity(groups.len());
        for (group_id, record) in groups {
            let bytes = record
                .map(|r| serde_json::to_vec(r).map_err(|e| Error::Store(e.to_string())))
                .transpose()?;
            encoded.push((*group_id, bytes));
        }
        self.write(|tx| {
            let mut table = tx.open_table(GROUPS).map_err(|e| e.to_string())?;
            for (group_id, bytes) in &encoded {
                match bytes {
                    Some(bytes) => {
                        table.insert(*group_id, bytes.as_slice()).map_err(|e| e.to_string())?;
                    }
                    None => {
                        table.remove(*group_id).map_err(|e| e.to_string())?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Every committed offset of a group: `(topic, partition) -> record`.
    pub fn group_offsets(&self, group: &str) -> Result<BTreeMap<(String, i32), OffsetRecord>> {
        self.read(|tx| {
            let table = tx.open_table(OFFSETS).map_err(|e| Error::Store(e.to_string()))?;
            let prefix = format!("{group}\0");
            let mut offsets = BTreeMap::new();
            let range = table.range(prefix.as_str()..).map_err(|e| Error::Store(e.to_string()))?;
            for entry in range {
                let (key, value) = entry.map_err(|e| Error::Store(e.to_string()))?;
                let Some(rest) = key.value().strip_prefix(&prefix) else { break };
                let Some((topic, partition)) = rest.rsplit_once('\0') else { continue };
                let Ok(partition) = partition.parse::<i32>() else { continue };
                let record: OffsetRecord = serde_json::from_slice(value.value())
                    .map_err(|e| Error::Store(e.to_string()))?;
                offsets.insert((topic.to_string(), partition), record);
            }
            Ok(offsets)
        })
    }

    /// Every group id with committed offsets.
    pub fn groups_with_offsets(&self) -> Result<Vec<String>> {
        self.read(|tx| {
            let table = tx.open_table(OFFSETS).map_err(|e| Error::Store(e.to_string()))?;
            let mut groups: Vec<String> = Vec::new();
            for entry in table.iter().map_err(|e| Error::Store(e.to_string()))? {
                let (key, _) = entry.map_err(|e| Error::Store(e.to_string()))?;
                if let Some((group, _)) = key.value().split_once('\0') {
                    if groups.last().map(String::as_str) != Some(group) {
                        groups.push(group.to_string());
                    }
                }
            }
            Ok(groups)
        })
    }

    /// Deletes committed offsets: all of a group's when `partitions` is `None`.
    pub fn delete_offsets(&self, group: &str, partitions: Option<&[(String, i32)]>) -> Result<()> {
        let keys: Vec<String> = match partitions {
            Some(list) => list.iter().map(|(t, p)| offset_key(group, t, *p)).collect(),
            None => {
                self.group_offsets(group)?.keys().map(|(t, p)| offset_key(group, t, *p)).collect()
            }
        };
        self.write(|tx| {
            let mut table = tx.open_table(OFFSETS).map_err(|e| e.to_string())?;
            for key in &keys {
                table.remove(key.as_str()).map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn topics_and_offsets_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        let store = Store::open(&path).unwrap();
        let id = store.cluster_id().unwrap();
        let record =
            TopicRecord { id: uuid::Uuid::new_v4(), partitions: 3, configs: BTreeMap::new() };
        store.put_topic("t", &record).unwrap();
        let offset = OffsetRecord {
            offset: 7,
            leader_epoch: -1,
            metadata: Some("m".into()),
            commit_timestamp_ms: 1,
        };
        store.commit_offsets("g", &[("t".into(), 1, offset.clone())]).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.cluster_id().unwrap(), id);
        assert_eq!(store.topics().unwrap()["t"], record);
        assert_eq!(store.group_offsets("g").unwrap()[&("t".to_string(), 1)], offset);
        assert_eq!(store.groups_with_offsets().unwrap(), vec!["g".to_string()]);
        store.delete_topic("t").unwrap();
        assert!(store.group_offsets("g").unwrap().is_empty());
    }

    fn txn_record(producer_id: i64) -> TxnRecord {
        TxnRecord {
            producer_id,
            producer_epoch: 0,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [("t".to_string(), 0)].into_iter().collect(),
            groups: Default::default(),
            pending_offsets: Vec::new(),
            started_ms: 1,
            updated_ms: 1,
            prepared_ends: Vec::new(),
        }
    }

    /// Durable transaction writes from many threads share syncs, and each returns only once
    /// a sync covers it: every one is there after a reopen.
    /// A synced commit waits for marker syncs another caller has in flight: it must not
    /// find the registry empty and commit a completion before its markers are durable.
    #[test]
    fn a_synced_commit_waits_for_marker_syncs_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("meta.redb")).unwrap();
        let in_flight = store.marker_syncs.lock().unwrap();
        let committed = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                store.sync().unwrap();
                committed.store(true, Ordering::Release);
            });
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert!(!committed.load(Ordering::Acquire), "committed ahead of a marker sync");
            drop(in_flight);
        });
        assert!(committed.load(Ordering::Acquire));
    }

    #[test]
    fn concurrent_durable_transaction_writes_are_all_synced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        let store = Store::open(&path).unwrap();
        std::thread::scope(|scope| {
            for thread in 0..8i64 {
                let store = &store;
                scope.spawn(move || {
                    for n in 0..25i64 {
                        let id = format!("txn-{thread}-{n}");
                        let record = txn_record(thread * 100 + n);
                        store.put_transaction(&id, Some(&record), &[], true).unwrap();
                        let synced = store.commits.synced.load(Ordering::Acquire);
                        assert!(synced >= 1, "returned before any sync");
                    }
                });
            }
        });
        let written = store.commits.written.load(Ordering::Acquire);
        assert_eq!(written, 200);
        assert_eq!(store.commits.synced.load(Ordering::Acquire), written);
        drop(store);
        let found = Store::open(&path).unwrap().transactions().unwrap();
        assert_eq!(found.len(), 200);
        assert_eq!(found["txn-7-24"], txn_record(724));
    }

    /// A redb backend over a file whose writes, length changes and syncs fail with ENOSPC
    /// while `full` is set, as on a full disk.
    #[derive(Debug)]
    struct FullDisk {
        file: redb::backends::FileBackend,
        full: std::sync::Arc<AtomicBool>,
    }

    impl FullDisk {
        fn check(&self) -> std::io::Result<()> {
            if self.full.load(Ordering::Acquire) {
                return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC on Linux
            }
            Ok(())
        }
    }

    impl redb::StorageBackend for FullDisk {
        fn len(&self) -> std::io::Result<u64> {
            self.file.len()
        }
        fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
            self.file.read(offset, len)
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.check()?;
            self.file.set_len(len)
        }
        fn sync_data(&self, eventual: bool) -> std::io::Result<()> {
            self.check()?;
            self.file.sync_data(eventual)
        }
        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.check()?;
            self.file.write(offset, data)
        }
    }

    pub(crate) fn open_on_full_disk(path: &Path, full: &std::sync::Arc<AtomicBool>) -> Store {
        let full = std::sync::Arc::clone(full);
        let opener: Opener = Box::new(move |path| {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?;
            let backend =
                FullDisk { file: redb::backends::FileBackend::new(file)?, full: full.clone() };
            redb::Builder::new().create_with_backend(backend)
        });
        Store::open_with(path, opener).unwrap()
    }

    fn offset(offset: i64) -> OffsetRecord {
        OffsetRecord { offset, leader_epoch: -1, metadata: None, commit_timestamp_ms: 1 }
    }

    /// redb refuses every write after an I/O error until it is reopened: the store reopens
    /// it, so commits work again once the disk has room, with nothing synced lost.
    #[test]
    fn the_store_works_again_once_a_full_disk_has_room() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        let full = std::sync::Arc::new(AtomicBool::new(false));
        let store = open_on_full_disk(&path, &full);
        store.commit_offsets("g", &[("t".into(), 0, offset(5))]).unwrap();
        // A synced write covers the unsynced ones before it.
        store.put_transaction("synced-later", Some(&txn_record(1)), &[], false).unwrap();
        store.commit_offsets("g", &[("t".into(), 1, offset(1))]).unwrap();

        full.store(true, Ordering::Release);
        let error = store.commit_offsets("g", &[("t".into(), 0, offset(6))]).unwrap_err();
        assert!(error.to_string().contains("No space left on device"), "{error}");
        // Reads go on.
        assert_eq!(store.group_offsets("g").unwrap()[&("t".to_string(), 0)], offset(5));
        // Still full: the reopen before the next write fails too, and says what to do.
        let error = store.commit_offsets("g", &[("t".into(), 0, offset(7))]).unwrap_err();
        assert!(error.to_string().contains("free disk space"), "{error}");
        // (This backend refuses even the writes an open makes, whatever room the folder's
        // file system shows; on a real full disk the reopen waits for
        // `STORE_REOPEN_FREE_BYTES_MIN`.)

        full.store(false, Ordering::Release);
        assert_eq!(store.group_offsets("g").unwrap()[&("t".to_string(), 0)], offset(5));
        store.commit_offsets("g", &[("t".into(), 0, offset(8))]).unwrap();
        assert_eq!(store.group_offsets("g").unwrap()[&("t".to_string(), 0)], offset(8));
        store.put_transaction("later", Some(&txn_record(2)), &[], true).unwrap();
        drop(store);
        let reopened = Store::open(&path).unwrap();
        assert_eq!(reopened.group_offsets("g").unwrap()[&("t".to_string(), 0)], offset(8));
        assert_eq!(reopened.transactions().unwrap()["synced-later"], txn_record(1));
        assert_eq!(reopened.transactions().unwrap()["later"], txn_record(2));
    }

    /// A transaction write whose commit fails leaves no unsynced state behind: the store
    /// reopens once the disk has room, as after any other failed write.
    #[test]
    fn a_failed_transaction_write_does_not_keep_the_store_from_reopening() {
        for durable in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("meta.redb");
            let full = std::sync::Arc::new(AtomicBool::new(false));
            let store = open_on_full_disk(&path, &full);
            full.store(true, Ordering::Release);
            let failed = store.put_transaction("failed", Some(&txn_record(3)), &[], durable);
            assert!(failed.is_err(), "a write on a full disk (durable: {durable})");
            full.store(false, Ordering::Release);
            store.commit_offsets("g", &[("t".into(), 0, offset(8))]).unwrap();
            store.put_transaction("later", Some(&txn_record(2)), &[], durable).unwrap();
            store.sync().unwrap();
            drop(store);
            let found = Store::open(&path).unwrap().transactions().unwrap();
            assert!(!found.contains_key("failed"), "a failed write is not there");
            assert_eq!(found["later"], txn_record(2));
        }
    }

    /// A durable write committed unsynced that waits for a shared sync, while a reopen
    /// (an I/O error elsewhere, then room) rolls it back: it is reported failed, not synced.
    #[test]
    fn a_write_a_reopen_rolled_back_is_not_reported_synced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        let full = std::sync::Arc::new(AtomicBool::new(false));
        let store = std::sync::Arc::new(open_on_full_disk(&path, &full));
        let written = store.commits.written.load(Ordering::Acquire);
        // Another write's sync is running: this one commits unsynced and waits for it.
        let sync_running = store.commits.lock.lock().unwrap();
        let writer = std::sync::Arc::clone(&store);
        let waiting = std::thread::spawn(move || {
            writer.put_transaction("lost", Some(&txn_record(1)), &[], true)
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.commits.written.load(Ordering::Acquire) == written {
            assert!(std::time::Instant::now() < deadline, "the write never committed");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        full.store(true, Ordering::Release);
        assert!(store.commit_offsets("g", &[("t".into(), 0, offset(1))]).is_err());
        full.store(false, Ordering::Release);
        store.commit_offsets("g", &[("t".into(), 0, offset(2))]).unwrap();
        drop(sync_running);
        let outcome = waiting.join().unwrap();
        let error = outcome.expect_err("a rolled-back write reported synced");
        assert!(error.to_string().contains("undone by reopening"), "{error}");
        assert!(!store.transactions().unwrap().contains_key("lost"));
        // Later writes are not affected.
        store.put_transaction("later", Some(&txn_record(2)), &[], true).unwrap();
        assert_eq!(store.transactions().unwrap().get("later"), Some(&txn_record(2)));
    }

    /// A reopen rolls redb back to its last synced commit: the transaction state written
    /// unsynced since (acted on by the coordinator: completions, their offsets, removed ids)
    /// is written again, synced, before the write that reopened it; nothing synced is lost.
    #[test]
    fn a_reopen_writes_unsynced_transaction_state_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        let full = std::sync::Arc::new(AtomicBool::new(false));
        let store = open_on_full_disk(&path, &full);
        let pending = |partition, at| PendingOffset {
            group: "g".into(),
            topic: "t".into(),
            partition,
            record: offset(at),
        };
        store.put_transaction("gone", Some(&txn_record(9)), &[], true).unwrap();
        store.put_transaction("kept", Some(&txn_record(4)), &[], true).unwrap();
        store.commit_offsets("g", &[("t".into(), 2, offset(20))]).unwrap();
        // Unsynced, each acted on: a completion with its offsets, a newer one of the same
        // id, another id's, and an expired id's removal.
        store.put_transaction("unsynced", Some(&txn_record(1)), &[pending(0, 3)], false).unwrap();
        store.put_transaction("unsynced", Some(&txn_record(2)), &[pending(1, 5)], false).unwrap();
        store.put_transaction("kept", Some(&txn_record(5)), &[pending(0, 4)], false).unwrap();
        store.put_transaction("gone", None, &[], false).unwrap();
        let number = store.commits.written.load(Ordering::Acquire);

        full.store(true, Ordering::Release);
        assert!(store.commit_offsets("g", &[("t".into(), 2, offset(21))]).is_err());
        assert!(store.sync_through(number).is_err(), "an unsynced commit reported synced");
        full.store(false, Ordering::Release);
        store.commit_offsets("g", &[("t".into(), 3, offset(30))]).unwrap();

        let check = |store: &Store, when: &str| {
            let transactions = store.transactions().unwrap();
            assert_eq!(transactions.get("unsynced"), Some(&txn_record(2)), "{when}");
            assert_eq!(transactions.get("kept"), Some(&txn_record(5)), "{when}");
            assert!(!transactions.contains_key("gone"), "{when}: a removal replayed");
            let offsets = store.group_offsets("g").unwrap();
            let at = |partition: i32| offsets.get(&("t".to_string(), partition)).map(|o| o.offset);
            assert_eq!(
                (at(0), at(1), at(2), at(3)),
                (Some(4), Some(5), Some(20), Some(30)),
                "{when}"
            );
        };
        check(&store, "reopened");
        drop(store);
        check(&Store::open(&path).unwrap(), "after a restart");
    }
}
