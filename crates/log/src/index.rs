//! The sparse offset and time indexes of one segment.
//!
//! Both live in memory (a sorted `Vec`) and are mirrored to a file so that a restart does
//! not rescan closed segments. The files are hints: a missing, short or inconsistent file is
//! rebuilt from the segment on open, so they are synced only when a segment is closed.
//!
//! A failed file write (a full disk) never fails an append: the entries stay in memory, both
//! files are cut to zero length (so the next open rebuilds them rather than trust a file
//! with entries missing), and no more entries are written until [`Indexes::catch_up`]
//! rewrites both files from memory.
//!
//! - `.index`: entries of (relative offset u32, position u32), big-endian, offsets and
//!   positions strictly increasing.
//! - `.timeindex`: entries of (timestamp i64, relative offset u32), big-endian, timestamps
//!   strictly increasing: the segment's max timestamp so far and the offset that carried it,
//!   added with each offset entry (when it has grown) and when the segment closes, as Kafka
//!   does, so both are sparse.
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::io;
use crate::limits::{OFFSET_INDEX_ENTRY_BYTES, TIME_INDEX_ENTRY_BYTES};
use crate::Result;

/// One offset index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    /// Offset minus the segment's base offset.
    pub relative_offset: u32,
    /// Byte position of the batch in the segment file.
    pub position: u32,
}

/// One time index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    /// The segment's max timestamp so far.
    pub timestamp: i64,
    /// Relative offset of the batch that carried it.
    pub relative_offset: u32,
}

/// Both indexes of a segment, in memory and on disk.
pub(crate) struct Indexes {
    pub offsets: Vec<OffsetEntry>,
    pub times: Vec<TimeEntry>,
    offset_file: File,
    offset_path: PathBuf,
    time_file: File,
    time_path: PathBuf,
    /// The files miss entries that memory has (a write failed); they are empty or being
    /// rewritten, and single entries are not written until [`Indexes::catch_up`] succeeds.
    files_behind: bool,
}

fn open_rw(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io("open index", path))
}

impl Indexes {
    /// Opens (creating if absent) the index files and loads them. Entries that do not fit
    /// the invariants end the load: the caller compares with the segment and rebuilds.
    pub fn open(offset_path: PathBuf, time_path: PathBuf) -> Result<Indexes> {
        let offset_file = open_rw(&offset_path)?;
        let time_file = open_rw(&time_path)?;
        let mut indexes = Indexes {
            offsets: Vec::new(),
            times: Vec::new(),
            offset_file,
            offset_path,
            time_file,
            time_path,
            files_behind: false,
        };
        indexes.load()?;
        Ok(indexes)
    }

    fn load(&mut self) -> Result<()> {
        let bytes = read_all(&self.offset_file, &self.offset_path)?;
        for chunk in bytes.chunks_exact(OFFSET_INDEX_ENTRY_BYTES) {
            let entry = OffsetEntry {
                relative_offset: u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                position: u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
            };
            let increasing = self.offsets.last().is_none_or(|last| {
                entry.relative_offset > last.relative_offset && entry.position > last.position
            });
            if !increasing {
                break;
            }
            self.offsets.push(entry);
        }
        let bytes = read_all(&self.time_file, &self.time_path)?;
        for chunk in bytes.chunks_exact(TIME_INDEX_ENTRY_BYTES) {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&chunk[..8]);
            let entry = TimeEntry {
                timestamp: i64::from_be_bytes(ts),
                relative_offset: u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]),
            };
            let increasing = self.times.last().is_none_or(|last| {
                entry.timestamp > last.timestamp && entry.relative_offset >= last.relative_offset
            });
            if !increasing {
                break;
            }
            self.times.push(entry);
        }
        Ok(())
    }

    /// Drops every entry and empties both files (before a rebuild).
    pub fn clear(&mut self) -> Result<()> {
        self.offsets.clear();
        self.times.clear();
        self.files_behind = false;
        self.offset_file.set_len(0).map_err(io("truncate index", &self.offset_path))?;
        self.time_file.set_len(0).map_err(io("truncate index", &self.time_path))?;
        Ok(())
    }

    /// Appends an offset entry in memory, and to its file unless the files are behind. An
    /// error means this write failed and the files were set behind; the entry is in memory.
    pub fn push_offset(&mut self, entry: OffsetEntry) -> Result<()> {
        if let Some(last) = self.offsets.last() {
            debug_assert!(entry.relative_offset > last.relative_offset, "{entry:?} after {last:?}");
            debug_assert!(entry.position > last.position, "{entry:?} after {last:?}");
        }
        let at = (self.offsets.len() * OFFSET_INDEX_ENTRY_BYTES) as u64;
        self.offsets.push(entry);
        if self.files_behind {
            return Ok(());
        }
        let written = self
            .offset_file
            .write_all_at(&offset_bytes(entry), at)
            .map_err(io("write index", &self.offset_path));
        self.fall_behind_on(written)
    }

    /// Appends a time entry if `timestamp` is above the last one (as [`Indexes::push_offset`]).
    pub fn push_time(&mut self, entry: TimeEntry) -> Result<()> {
        if self.times.last().is_some_and(|last| entry.timestamp <= last.timestamp) {
            return Ok(());
        }
        let at = (self.times.len() * TIME_INDEX_ENTRY_BYTES) as u64;
        self.times.push(entry);
        if self.files_behind {
            return Ok(());
        }
        let written = self
            .time_file
            .write_all_at(&time_bytes(entry), at)
            .map_err(io("write index", &self.time_path));
        self.fall_behind_on(written)
    }

    /// After a failed write: both files are cut to zero length, so that an open before
    /// [`Indexes::catch_up`] rebuilds them (cutting needs no free space), and marked behind.
    fn fall_behind_on(&mut self, written: Result<()>) -> Result<()> {
        if written.is_err() {
            self.files_behind = true;
            let _ = self.offset_file.set_len(0);
            let _ = self.time_file.set_len(0);
        }
        written
    }

    /// Whether the files miss entries that memory has.
    pub fn files_behind(&self) -> bool {
        self.files_behind
    }

    /// Rewrites both files from memory when they are behind; `Ok(true)` when they were and
    /// now hold every entry. On failure they stay behind (and empty).
    pub fn catch_up(&mut self) -> Result<bool> {
        if !self.files_behind {
            return Ok(false);
        }
        let offsets: Vec<u8> = self.offsets.iter().flat_map(|e| offset_bytes(*e)).collect();
        let times: Vec<u8> = self.times.iter().flat_map(|e| time_bytes(*e)).collect();
        // The time file first: until the offset file has entries, an open rebuilds both.
        let written = self
            .time_file
            .write_all_at(&times, 0)
            .map_err(io("write index", &self.time_path))
            .and_then(|()| {
                self.offset_file
                    .write_all_at(&offsets, 0)
                    .map_err(io("write index", &self.offset_path))
            });
        if let Err(error) = written {
            let _ = self.offset_file.set_len(0);
            let _ = self.time_file.set_len(0);
            return Err(error);
        }
        self.files_behind = false;
        Ok(true)
    }

    /// The position of the last indexed batch at or before `relative_offset` (0 if none).
    pub fn position_for(&self, relative_offset: u32) -> u32 {
        let after = self.offsets.partition_point(|e| e.relative_offset <= relative_offset);
        match after.checked_sub(1).and_then(|i| self.offsets.get(i)) {
            Some(entry) => entry.position,
            None => 0,
        }
    }

    /// The relative offset of the last time entry below `timestamp` (0 if none): scanning
    /// from there finds the first batch whose max timestamp reaches it.
    pub fn relative_offset_before_time(&self, timestamp: i64) -> u32 {
        let after = self.times.partition_point(|e| e.timestamp < timestamp);
        match after.checked_sub(1).and_then(|i| self.times.get(i)) {
            Some(entry) => entry.relative_offset,
            None => 0,
        }
    }

    /// The largest timestamp indexed, if any.
    pub fn max_timestamp(&self) -> Option<TimeEntry> {
        self.times.last().copied()
    }

    /// Syncs both files (when the segment is closed).
    pub fn sync(&self) -> Result<()> {
        self.offset_file.sync_data().map_err(io("sync index", &self.offset_path))?;
        self.time_file.sync_data().map_err(io("sync index", &self.time_path))?;
        Ok(())
    }

    /// Removes both files.
    pub fn delete_files(&self) -> Result<()> {
        for path in [&self.offset_path, &self.time_path] {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io("delete index", path)(e));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn offset_bytes(entry: OffsetEntry) -> [u8; OFFSET_INDEX_ENTRY_BYTES] {
    let mut bytes = [0u8; OFFSET_INDEX_ENTRY_BYTES];
    bytes[..4].copy_from_slice(&entry.relative_offset.to_be_bytes());
    bytes[4..].copy_from_slice(&entry.position.to_be_bytes());
    bytes
}

fn time_bytes(entry: TimeEntry) -> [u8; TIME_INDEX_ENTRY_BYTES] {
    let mut bytes = [0u8; TIME_INDEX_ENTRY_BYTES];
    bytes[..8].copy_from_slice(&entry.timestamp.to_be_bytes());
    bytes[8..].copy_from_slice(&entry.relative_offset.to_be_bytes());
    bytes
}

fn read_all(file: &File, path: &Path) -> Result<Vec<u8>> {
    let len = file.metadata().map_err(io("stat index", path))?.len();
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0).map_err(io("read index", path))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn open(dir: &Path) -> Indexes {
        Indexes::open(dir.join("0.index"), dir.join("0.timeindex")).unwrap()
    }

    proptest! {
        #[test]
        fn lookup_finds_the_last_entry_at_or_before(steps in proptest::collection::vec(1u32..100, 1..50), probe in 0u32..6000) {
            let dir = tempfile::tempdir().unwrap();
            let mut index = open(dir.path());
            let (mut offset, mut position) = (0u32, 0u32);
            let mut entries = Vec::new();
            for step in steps {
                offset += step;
                position += step * 10;
                index.push_offset(OffsetEntry { relative_offset: offset, position }).unwrap();
                entries.push((offset, position));
            }
            let expected = entries.iter().rev().find(|(o, _)| *o <= probe).map(|(_, p)| *p).unwrap_or(0);
            prop_assert_eq!(index.position_for(probe), expected);
            drop(index);
            let reopened = open(dir.path());
            prop_assert_eq!(reopened.offsets.len(), entries.len());
            prop_assert_eq!(reopened.position_for(probe), expected);
        }
    }

    #[test]
    fn load_stops_at_a_torn_or_out_of_order_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = open(dir.path());
        index.push_offset(OffsetEntry { relative_offset: 5, position: 100 }).unwrap();
        index.push_offset(OffsetEntry { relative_offset: 9, position: 200 }).unwrap();
        drop(index);
        let path = dir.path().join("0.index");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0, 0, 0, 1, 0, 0]); // a torn, out-of-order entry
        std::fs::write(&path, bytes).unwrap();
        let index = open(dir.path());
        assert_eq!(index.offsets.len(), 2);
    }

    /// A failed file write (as on a full disk) keeps the entry in memory, empties both files
    /// so that an open in between rebuilds them, writes no more single entries, and a
    /// catch-up writes every entry back.
    #[test]
    fn a_failed_write_keeps_memory_and_the_files_catch_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = open(dir.path());
        index.push_offset(OffsetEntry { relative_offset: 1, position: 10 }).unwrap();
        index.push_time(TimeEntry { timestamp: 100, relative_offset: 1 }).unwrap();
        // A handle that cannot write stands in for a disk with no room.
        let writable = std::mem::replace(
            &mut index.offset_file,
            File::open(dir.path().join("0.index")).unwrap(),
        );
        assert!(index.push_offset(OffsetEntry { relative_offset: 2, position: 20 }).is_err());
        assert!(index.files_behind());
        assert_eq!(index.offsets.len(), 2, "the entry is in memory");
        assert_eq!(index.position_for(2), 20);
        assert_eq!(std::fs::metadata(dir.path().join("0.timeindex")).unwrap().len(), 0);
        // Behind: later entries go to memory only, without another error.
        index.push_time(TimeEntry { timestamp: 200, relative_offset: 2 }).unwrap();
        assert_eq!(std::fs::metadata(dir.path().join("0.timeindex")).unwrap().len(), 0);
        // (This stand-in cannot cut the offset file; an empty time file alone makes a
        // segment's open rebuild both.)
        let reopened = Indexes::open(dir.path().join("0.index"), dir.path().join("0.timeindex"));
        assert!(reopened.unwrap().times.is_empty(), "an open in between finds nothing to trust");

        index.offset_file = writable;
        assert!(index.catch_up().unwrap(), "caught up");
        assert!(!index.files_behind());
        assert!(!index.catch_up().unwrap(), "nothing left to catch up");
        index.push_offset(OffsetEntry { relative_offset: 3, position: 30 }).unwrap();
        drop(index);
        let reopened = open(dir.path());
        assert_eq!(reopened.offsets.iter().map(|e| e.position).collect::<Vec<_>>(), [10, 20, 30]);
        assert_eq!(reopened.times.iter().map(|e| e.timestamp).collect::<Vec<_>>(), [100, 200]);
    }
}
