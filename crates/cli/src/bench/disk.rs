//! `sluice bench disk`: the machine's limit for durable appends, in the data folder's
//! filesystem.
//!
//! Three runs, each appending to a fresh file as the log does (so every fdatasync also
//! makes the new file size durable):
//! - naive: append 1 MiB, fdatasync, repeat: the bandwidth a broker gets with one sync per
//!   MiB and no group commit ("fsync-per-MiB bandwidth"). Run `DISK_NAIVE_REPEATS` times on
//!   fresh files and the best run is the limit: background writeback can slow one run by
//!   half, and a limit measured low would flatter every ratio to it. Each file is removed
//!   before the next run, so the later runs write into page-cache memory just freed;
//! - naive into fresh memory: the same appends to one file kept until the end, for
//!   `DISK_FRESH_BYTES`, timed per chunk. A log keeps what it writes, so its page cache
//!   grows into memory nothing used recently; on a VM that returns free memory to its host
//!   every such page is faulted in from the host first, and the page-cache copy, not the
//!   device, sets the pace. The best chunk of the second half is this limit;
//! - sync cost: append 4 KiB, fdatasync, repeat 200 times: what one sync costs when there
//!   is almost nothing to write, which bounds the latency of any durable acknowledgement.
//!
//! Every file is removed afterwards. `bench wire` also runs the disk alone at its paced
//! run's load ([`paced`]) and in a transaction's pattern ([`transactions`]), with two
//! syncs per transaction (what the broker does) and with one (the least a log that
//! appends to a growing file, as ours does, can wait before it answers a durable commit).
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use serde::Serialize;

use super::limits::{
    DISK_FRESH_BYTES, DISK_FRESH_CHUNK_BYTES, DISK_NAIVE_BYTES, DISK_NAIVE_REPEATS,
    DISK_NAIVE_WRITE_BYTES, DISK_SYNC_COUNT, DISK_SYNC_WRITE_BYTES, MIB,
};
use super::stats::{summarise, LatencyMs};
use super::Progress;

/// Results of the disk runs.
#[derive(Debug, Clone, Serialize)]
pub struct DiskResult {
    /// Bytes each naive run appended.
    pub naive_bytes: u64,
    /// Bytes per append (and per fdatasync) of the naive run.
    pub naive_write_bytes: u64,
    /// Bandwidth of each naive run, in order.
    pub naive_runs_mib_per_s: Vec<f64>,
    /// The limit: the best naive run's bandwidth (1 MiB appends, each synced).
    pub naive_mib_per_s: f64,
    /// Bytes the fresh-memory run appended (to one file, kept until it finished).
    pub fresh_bytes: u64,
    /// Bytes per timed chunk of the fresh-memory run.
    pub fresh_chunk_bytes: u64,
    /// Bandwidth of each chunk of the fresh-memory run, in order.
    pub fresh_chunks_mib_per_s: Vec<f64>,
    /// The naive limit where the page cache grows as a log's does: the best chunk of the
    /// fresh-memory run's second half.
    pub fresh_mib_per_s: f64,
    /// Bytes per append of the sync-cost run.
    pub sync_write_bytes: u64,
    /// Cost of one write plus fdatasync in the sync-cost run.
    pub sync_ms: LatencyMs,
}

/// Runs the disk measurements in `dir`: the naive runs, the fresh-memory run, the sync cost.
pub fn run(dir: &Path, progress: &Progress) -> Result<DiskResult> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let total = DISK_NAIVE_BYTES * DISK_NAIVE_REPEATS as u64 + DISK_FRESH_BYTES;
    let bar = progress.bytes("disk: 1 MiB + fdatasync", total);
    let mut naive_runs_mib_per_s = Vec::with_capacity(DISK_NAIVE_REPEATS);
    for repeat in 0..DISK_NAIVE_REPEATS {
        let path = dir.join(format!("naive-{repeat}.probe"));
        naive_runs_mib_per_s.extend(naive(&path, DISK_NAIVE_BYTES, DISK_NAIVE_BYTES, &bar)?);
    }
    let naive_mib_per_s = naive_runs_mib_per_s.iter().copied().fold(0.0, f64::max);
    let fresh_chunks_mib_per_s =
        naive(&dir.join("fresh.probe"), DISK_FRESH_BYTES, DISK_FRESH_CHUNK_BYTES, &bar)?;
    bar.finish_and_clear();
    // The second half only: a pool of freed memory larger than the first half would make
    // this limit higher, never lower.
    let second_half = fresh_chunks_mib_per_s.iter().skip(fresh_chunks_mib_per_s.len() / 2);
    let fresh_mib_per_s = second_half.copied().fold(0.0, f64::max);
    let bar = progress.count("disk: 4 KiB + fdatasync", DISK_SYNC_COUNT as u64);
    let samples = sync_cost(&dir.join("sync.probe"), &bar)?;
    bar.finish_and_clear();
    Ok(DiskResult {
        naive_bytes: DISK_NAIVE_BYTES,
        naive_write_bytes: DISK_NAIVE_WRITE_BYTES as u64,
        naive_runs_mib_per_s,
        naive_mib_per_s,
        fresh_bytes: DISK_FRESH_BYTES,
        fresh_chunk_bytes: DISK_FRESH_CHUNK_BYTES,
        fresh_chunks_mib_per_s,
        fresh_mib_per_s,
        sync_write_bytes: DISK_SYNC_WRITE_BYTES as u64,
        sync_ms: summarise(&samples),
    })
}

/// The disk alone at a paced produce run's load: what the latency of a durable
/// acknowledgement can be at that load, whatever the broker does.
#[derive(Debug, Clone, Serialize)]
pub struct PacedDisk {
    /// Rounds started per second (the paced run's requests per second).
    pub rounds_per_s: f64,
    /// Files appended to in each round, in parallel (the topic's partitions).
    pub files: usize,
    /// Bytes appended to each file in each round (one partition's batch).
    pub bytes_per_file: u64,
    /// Per round: from its due time until every file's append and fdatasync returned.
    pub latency_ms: LatencyMs,
}

/// Appends `bytes_per_file` to each of `files` fresh files, one thread per file, and
/// fdatasyncs each, in rounds due `rounds_per_s` times a second for `secs`: the shape of a
/// paced produce run (one request = one batch per partition, each partition synced), with
/// nothing but the disk under it. A round that starts late counts from its due time, as a
/// request queued behind a slow one does.
pub fn paced(
    dir: &Path,
    (rounds_per_s, secs): (f64, u64),
    (files, bytes_per_file): (usize, usize),
    bar: &ProgressBar,
) -> Result<PacedDisk> {
    let chunk = pattern(bytes_per_file);
    let rounds = ((rounds_per_s * secs as f64) as usize).max(1);
    let interval = Duration::from_secs_f64(1.0 / rounds_per_s.max(f64::MIN_POSITIVE));
    // The clock starts with the first round, once the files exist.
    let started = std::sync::OnceLock::new();
    let due = |round: usize| *started.get_or_init(Instant::now) + interval.mul_f64(round as f64);
    let finished: Vec<Vec<Instant>> = per_file(dir, "paced", files, |file, path| {
        let mut done = Vec::with_capacity(rounds);
        for round in 0..rounds {
            if let Some(wait) = due(round).checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            append_and_sync(file, &chunk, path)?;
            done.push(Instant::now());
            bar.inc(1);
        }
        Ok(done)
    })?;
    let samples: Vec<Duration> = (0..rounds)
        .map(|round| {
            let last = finished.iter().filter_map(|done| done.get(round)).max();
            last.map_or(Duration::ZERO, |last| last.saturating_duration_since(due(round)))
        })
        .collect();
    Ok(PacedDisk {
        rounds_per_s,
        files,
        bytes_per_file: bytes_per_file as u64,
        latency_ms: summarise(&samples),
    })
}

/// How many syncs one transaction of [`transactions`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionSyncs {
    /// The records' sync (before the Produce is answered), then the marker's (before the
    /// EndTxn is): what the broker does for a transaction of one partition.
    RecordsThenMarker,
    /// Records and marker appended, then one sync. A producer that runs one transaction at
    /// a time cannot be told its commit is durable sooner than this by a broker whose log
    /// appends to a growing file, as ours does. (Not a ceiling of every broker: on ext4 an
    /// overwrite of space written before syncs without the inode, and so faster.)
    Once,
}

/// The disk alone doing what a transaction of one partition makes the broker do: append
/// its records and sync them (the Produce), then append its marker and sync it (the EndTxn);
/// or both and then one sync.
#[derive(Debug, Clone, Serialize)]
pub struct TransactionsDisk {
    /// Files written in parallel, one thread each (one transactional producer each).
    pub files: usize,
    /// Syncs each transaction waited for.
    pub syncs: TransactionSyncs,
    /// Bytes of one transaction's records (its batch), then of its marker.
    pub batch_bytes: u64,
    pub marker_bytes: u64,
    /// Transactions done, over all files.
    pub transactions: u64,
    pub secs: f64,
    /// Transactions a second, over all files.
    pub transactions_per_s: f64,
    /// Payload bytes a second (`payload_bytes` per transaction), as the produce runs count.
    pub mib_per_s: f64,
}

/// Each of `files` threads, on a fresh file of its own, repeats for `secs`: append `batch`
/// and fdatasync, append `marker` and fdatasync (or, with [`TransactionSyncs::Once`], both
/// appends and one fdatasync). `payload_bytes` per transaction make its MiB/s, as the
/// records' payload makes a produce run's.
pub fn transactions(
    dir: &Path,
    files: usize,
    secs: f64,
    (batch, marker, payload_bytes): (&[u8], &[u8], u64),
    syncs: TransactionSyncs,
    bar: &ProgressBar,
) -> Result<TransactionsDisk> {
    // The clock starts with the first transaction, once the files exist.
    let started = std::sync::OnceLock::new();
    let counts: Vec<u64> = per_file(dir, "txn", files, |file, path| {
        let deadline = *started.get_or_init(Instant::now) + Duration::from_secs_f64(secs);
        let mut done = 0;
        while Instant::now() < deadline {
            match syncs {
                TransactionSyncs::RecordsThenMarker => {
                    append_and_sync(file, batch, path)?;
                    append_and_sync(file, marker, path)?;
                }
                TransactionSyncs::Once => {
                    append(file, batch, path)?;
                    append_and_sync(file, marker, path)?;
                }
            }
            done += 1;
            bar.inc(1);
        }
        Ok(done)
    })?;
    let secs = started.get().map_or(secs, |started| started.elapsed().as_secs_f64());
    let transactions: u64 = counts.iter().sum();
    Ok(TransactionsDisk {
        files,
        syncs,
        batch_bytes: batch.len() as u64,
        marker_bytes: marker.len() as u64,
        transactions,
        secs,
        transactions_per_s: transactions as f64 / secs,
        mib_per_s: (transactions * payload_bytes) as f64 / MIB as f64 / secs,
    })
}

/// Runs `work` on `files` fresh files in `dir` (named `{prefix}-{i}.probe`), one thread per
/// file and all at once, then removes them (and `dir`, if that leaves it empty); returns
/// each file's result in order.
fn per_file<T: Send>(
    dir: &Path,
    prefix: &str,
    files: usize,
    work: impl Fn(&mut File, &Path) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let paths: Vec<_> = (0..files).map(|i| dir.join(format!("{prefix}-{i}.probe"))).collect();
    let mut handles = paths.iter().map(|path| create(path)).collect::<Result<Vec<File>>>()?;
    let results = std::thread::scope(|scope| {
        let work = &work;
        let workers: Vec<_> = handles
            .iter_mut()
            .zip(&paths)
            .map(|(file, path)| scope.spawn(move || work(file, path)))
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker.join().map_err(|_| anyhow::anyhow!("a {prefix} disk thread panicked"))?
            })
            .collect::<Result<Vec<_>>>()
    })?;
    drop(handles);
    for path in &paths {
        remove(path)?;
    }
    let _ = std::fs::remove_dir(dir);
    Ok(results)
}

/// Appends 1 MiB and syncs until `bytes` are written to one file, then removes it; returns
/// the bandwidth (MiB/s) of each `chunk_bytes` in order, a shorter last chunk at its own size.
fn naive(path: &Path, bytes: u64, chunk_bytes: u64, bar: &ProgressBar) -> Result<Vec<f64>> {
    let mut file = create(path)?;
    let write = pattern(DISK_NAIVE_WRITE_BYTES);
    let mut chunks = Vec::new();
    let mut chunk_started = Instant::now();
    let (mut written, mut chunk_written): (u64, u64) = (0, 0);
    while written < bytes {
        append_and_sync(&mut file, &write, path)?;
        written += write.len() as u64;
        chunk_written += write.len() as u64;
        bar.inc(write.len() as u64);
        if chunk_written >= chunk_bytes || written >= bytes {
            let secs = chunk_started.elapsed().as_secs_f64();
            chunks.push(chunk_written as f64 / MIB as f64 / secs);
            (chunk_started, chunk_written) = (Instant::now(), 0);
        }
    }
    remove(path)?;
    Ok(chunks)
}

/// Appends 4 KiB and syncs `DISK_SYNC_COUNT` times; returns each append's duration.
fn sync_cost(path: &Path, bar: &ProgressBar) -> Result<Vec<Duration>> {
    let mut file = create(path)?;
    let chunk = pattern(DISK_SYNC_WRITE_BYTES);
    let mut samples = Vec::with_capacity(DISK_SYNC_COUNT);
    for _ in 0..DISK_SYNC_COUNT {
        let started = Instant::now();
        append_and_sync(&mut file, &chunk, path)?;
        samples.push(started.elapsed());
        bar.inc(1);
    }
    remove(path)?;
    Ok(samples)
}

fn create(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

fn append(file: &mut File, chunk: &[u8], path: &Path) -> Result<()> {
    file.write_all(chunk).with_context(|| format!("cannot write {}", path.display()))
}

fn append_and_sync(file: &mut File, chunk: &[u8], path: &Path) -> Result<()> {
    append(file, chunk, path)?;
    // `sync_data` is fdatasync(2) on Linux, the call the log makes.
    file.sync_data().with_context(|| format!("cannot sync {}", path.display()))
}

fn remove(path: &Path) -> Result<()> {
    std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))
}

/// Bytes that no filesystem can compress or deduplicate cheaply (a xorshift sequence).
pub fn pattern(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file does whole transactions (batch, sync, marker, sync; or batch, marker,
    /// sync), and nothing is left.
    #[test]
    fn the_transactions_pattern_counts_whole_transactions_and_cleans_up() {
        for syncs in [TransactionSyncs::RecordsThenMarker, TransactionSyncs::Once] {
            let scratch = tempfile::tempdir().unwrap();
            let dir = scratch.path().join("txn-disk");
            let bar = ProgressBar::hidden();
            let pattern = (&[1; 1000][..], &[2; 78][..], 900);
            let run = transactions(&dir, 2, 0.2, pattern, syncs, &bar).unwrap();
            assert_eq!((run.files, run.batch_bytes, run.marker_bytes), (2, 1000, 78));
            assert_eq!(run.syncs, syncs);
            assert!(run.transactions > 0 && run.transactions == bar.position());
            let expected = (run.transactions * 900) as f64 / MIB as f64 / run.secs;
            assert!((run.mib_per_s - expected).abs() < 1e-9);
            assert!(!dir.exists(), "the scratch folder is removed");
        }
    }

    /// One bandwidth per chunk, a shorter last chunk included, every byte counted once, and
    /// the file removed.
    #[test]
    fn the_naive_run_times_each_chunk_and_cleans_up() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("naive.probe");
        let bar = ProgressBar::hidden();
        let write = DISK_NAIVE_WRITE_BYTES as u64;
        let chunks = naive(&path, 5 * write, 2 * write, &bar).unwrap();
        assert_eq!(chunks.len(), 3, "two whole chunks and a last one of one write");
        assert!(chunks.iter().all(|mib_per_s| mib_per_s.is_finite() && *mib_per_s > 0.0));
        assert_eq!(bar.position(), 5 * write);
        assert!(!path.exists(), "the probe file is removed");
    }
}
