//! One segment: a `.log` file of whole record batches, plus its indexes.
//!
//! Files are named by the segment's base offset, zero-padded to 20 digits as Kafka names
//! them (`00000000000000000042.log`), so a directory listing sorts by offset.
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sluice_wire::batch::{self, BatchHeader};

use crate::error::io;
use crate::index::{Indexes, OffsetEntry, TimeEntry};
use crate::limits::{INDEX_CATCH_UP_RETRY_INTERVAL, SCAN_CHUNK_BYTES, ZEROS_BUFFER_BYTES};
use crate::{Error, Result};

/// A segment of one partition's log.
pub(crate) struct Segment {
    /// Offset of the first batch (fixed by the file name).
    pub base_offset: i64,
    /// Offset after the last batch; `base_offset` when empty.
    pub next_offset: i64,
    /// Bytes of whole batches in the file.
    pub size_bytes: u64,
    /// Largest timestamp of any batch, -1 when empty.
    pub max_timestamp: i64,
    /// Last offset of the first batch carrying `max_timestamp`, -1 when empty.
    pub offset_of_max_timestamp: i64,
    /// The first batch's max timestamp (-1 when empty or it has none): `segment.ms`
    /// counts from it, as Kafka's does.
    pub first_batch_timestamp: i64,
    /// Wall-clock time the segment was created or first opened: `segment.ms` counts from
    /// it when the first batch has no timestamp.
    pub created_ms: i64,
    /// Bytes appended since the last index entry.
    bytes_since_index: u64,
    /// `index.interval.bytes` in force.
    pub index_interval_bytes: u64,
    /// Zeros to keep written ahead of the last batch (`preallocate`); 0 when off.
    pub preallocate_bytes: u64,
    /// `segment.bytes`: no zeros are written past it.
    pub segment_bytes: u64,
    /// The file's length as written by this segment: whole batches, then any zeros
    /// written ahead of them.
    file_bytes: u64,
    pub file: Arc<File>,
    pub path: PathBuf,
    pub indexes: Indexes,
    /// While the index files are behind: no catch-up is tried before this.
    next_catch_up: Option<Instant>,
}

/// The file stem for a base offset.
pub(crate) fn stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

/// Batches found by a scan: where the valid prefix ends.
struct ScanEnd {
    size_bytes: u64,
    next_offset: i64,
}

impl Segment {
    /// Opens the segment's `.log` (creating it when `create`) and its indexes, with no
    /// batches counted yet.
    fn open_files(
        dir: &Path,
        base_offset: i64,
        create: bool,
        now_ms: i64,
        index_interval_bytes: u64,
    ) -> Result<Segment> {
        let path = dir.join(format!("{}.log", stem(base_offset)));
        let op = if create { "create segment" } else { "open segment" };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(create)
            .open(&path)
            .map_err(io(op, &path))?;
        let indexes = Indexes::open(
            dir.join(format!("{}.index", stem(base_offset))),
            dir.join(format!("{}.timeindex", stem(base_offset))),
        )?;
        Ok(Segment {
            base_offset,
            next_offset: base_offset,
            size_bytes: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            first_batch_timestamp: -1,
            created_ms: now_ms,
            bytes_since_index: 0,
            index_interval_bytes,
            preallocate_bytes: 0,
            segment_bytes: u64::MAX,
            file_bytes: 0,
            file: Arc::new(file),
            path,
            indexes,
            next_catch_up: None,
        })
    }

    /// Creates an empty segment file (and its indexes).
    pub fn create(
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
        index_interval_bytes: u64,
    ) -> Result<Segment> {
        Self::open_files(dir, base_offset, true, now_ms, index_interval_bytes)
    }

    /// Opens an existing segment. The active (last) segment is scanned whole with CRC
    /// checks and cut after its last valid batch (a torn write); closed segments trust their
    /// index files when consistent and are rescanned (headers only) when not.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        active: bool,
        now_ms: i64,
        index_interval_bytes: u64,
    ) -> Result<Segment> {
        let mut segment = Self::open_files(dir, base_offset, false, now_ms, index_interval_bytes)?;
        let file_bytes = segment.file.metadata().map_err(io("stat segment", &segment.path))?.len();
        if active {
            segment.indexes.clear()?;
            segment.rebuild(file_bytes, true)?;
        } else if !segment.resume_from_index(file_bytes)? {
            segment.indexes.clear()?;
            segment.rebuild(file_bytes, false)?;
            // A closed segment's time index ends with its max timestamp, as one closed at
            // roll does.
            segment.end_time_index();
        }
        // Recovery cut whatever followed the last whole batch, zeros written ahead included.
        segment.file_bytes = segment.size_bytes;
        Ok(segment)
    }

    /// Uses the index files of a closed segment: scans only from the last indexed batch.
    /// Returns false when the index does not fit the file and a full rebuild is needed.
    ///
    /// The time index's last entry holds the max timestamp up to the last offset entry's
    /// batch (both are written together, and once more when the segment closes), so the max
    /// over that entry and the batches scanned from there is the segment's.
    fn resume_from_index(&mut self, file_bytes: u64) -> Result<bool> {
        let Some(last) = self.indexes.offsets.last().copied() else {
            return Ok(false);
        };
        let Some(max_time) = self.indexes.max_timestamp() else {
            return Ok(false);
        };
        if u64::from(last.position) >= file_bytes {
            return Ok(false);
        }
        let mut scanned_max = (-1i64, -1i64);
        // The entry names the base offset of the batch at its position: a batch found there
        // with another base offset ends the scan at once, and the segment is rebuilt.
        let expected_first = self.base_offset + i64::from(last.relative_offset);
        let from = (u64::from(last.position), expected_first);
        let end = self.scan(from, file_bytes, false, |_, header, _| {
            if header.max_timestamp > scanned_max.0 {
                scanned_max = (header.max_timestamp, header.last_offset());
            }
            Ok(())
        })?;
        let max_time_offset = self.base_offset + i64::from(max_time.relative_offset);
        if end.size_bytes != file_bytes
            || end.next_offset <= expected_first
            || max_time_offset >= end.next_offset
        {
            return Ok(false);
        }
        self.size_bytes = end.size_bytes;
        self.next_offset = end.next_offset;
        (self.max_timestamp, self.offset_of_max_timestamp) = if max_time.timestamp >= scanned_max.0
        {
            (max_time.timestamp, max_time_offset)
        } else {
            scanned_max
        };
        Ok(true)
    }

    /// Scans the whole file, rebuilding both indexes; cuts the file after the last valid
    /// batch. With `check_crc`, every batch is fully validated (the active segment).
    fn rebuild(&mut self, file_bytes: u64, check_crc: bool) -> Result<()> {
        let mut found = Vec::new();
        let end =
            self.scan((0, self.base_offset), file_bytes, check_crc, |position, header, _| {
                found.push((position, *header));
                Ok(())
            })?;
        for (position, header) in found {
            if let Err(error) = self.index_batch(position, &header) {
                // Memory holds the entries; the files are rebuilt at the next open unless
                // the segment catches them up before (a full disk must not stop a start).
                self.warn_index_behind(&error);
            }
        }
        if end.size_bytes < file_bytes {
            if self.only_zeros(end.size_bytes, file_bytes)? {
                // Written ahead by `preallocate`: nothing was lost.
                tracing::debug!(
                    segment = %self.path.display(),
                    valid_bytes = end.size_bytes,
                    file_bytes,
                    "cutting the zeros written ahead of the segment's last batch"
                );
            } else {
                tracing::warn!(
                    segment = %self.path.display(),
                    valid_bytes = end.size_bytes,
                    file_bytes,
                    "truncating torn or corrupt tail of segment"
                );
            }
            self.file.set_len(end.size_bytes).map_err(io("truncate segment", &self.path))?;
            self.file.sync_all().map_err(io("sync segment", &self.path))?;
        }
        self.size_bytes = end.size_bytes;
        self.next_offset = end.next_offset;
        Ok(())
    }

    /// Whether the file holds only zero bytes from `from` to `to`.
    fn only_zeros(&self, from: u64, to: u64) -> Result<bool> {
        let mut buf = vec![0u8; SCAN_CHUNK_BYTES];
        let mut position = from;
        while position < to {
            let want = (to - position).min(SCAN_CHUNK_BYTES as u64) as usize;
            let chunk = buf.get_mut(..want).unwrap_or_default();
            self.file.read_exact_at(chunk, position).map_err(io("read segment", &self.path))?;
            if chunk.iter().any(|byte| *byte != 0) {
                return Ok(false);
            }
            position += want as u64;
        }
        Ok(true)
    }

    /// Walks batches from `from` (a position and the base offset of the batch expected
    /// there) until the end of the file or the first batch that is truncated, out of
    /// sequence or (with `check_crc`) corrupt.
    fn scan(
        &self,
        from: (u64, i64),
        file_bytes: u64,
        check_crc: bool,
        mut visit: impl FnMut(u64, &batch::BatchHeader, &[u8]) -> Result<()>,
    ) -> Result<ScanEnd> {
        let (mut position, mut expected_offset) = from;
        let mut buf = Vec::new();
        while position < file_bytes {
            let want = (file_bytes - position).min(SCAN_CHUNK_BYTES as u64) as usize;
            buf.resize(want, 0);
            self.file.read_exact_at(&mut buf, position).map_err(io("read segment", &self.path))?;
            let mut at = 0usize;
            loop {
                let rest = buf.get(at..).unwrap_or_default();
                let header = match batch::parse_header(rest) {
                    Ok(header) => header,
                    Err(_) => break,
                };
                if header.total_bytes > rest.len() {
                    break;
                }
                let valid = !check_crc || batch::validate_stored(rest).is_ok();
                if !valid || header.base_offset != expected_offset {
                    return Ok(ScanEnd {
                        size_bytes: position + at as u64,
                        next_offset: expected_offset,
                    });
                }
                visit(
                    position + at as u64,
                    &header,
                    rest.get(..header.total_bytes).unwrap_or(rest),
                )?;
                expected_offset = header.next_offset();
                at += header.total_bytes;
            }
            if at == 0 {
                // The next batch is larger than the chunk or torn: read it whole, once.
                let Ok((_, total)) = batch::peek_offset_and_size(&buf) else { break };
                if position + total as u64 > file_bytes || total <= buf.len() {
                    break;
                }
                let mut whole = vec![0u8; total];
                self.file
                    .read_exact_at(&mut whole, position)
                    .map_err(io("read segment", &self.path))?;
                let Ok(header) = (if check_crc {
                    batch::validate_stored(&whole)
                } else {
                    batch::parse_header(&whole)
                }) else {
                    break;
                };
                if header.base_offset != expected_offset {
                    break;
                }
                visit(position, &header, &whole)?;
                expected_offset = header.next_offset();
                position += total as u64;
                continue;
            }
            position += at as u64;
        }
        Ok(ScanEnd { size_bytes: position, next_offset: expected_offset })
    }

    /// Records a batch written at `position` in the segment's counters and, every
    /// `index.interval.bytes`, in both indexes (as Kafka: the offset index gets the batch,
    /// the time index the max timestamp so far and the offset of the batch carrying it).
    fn index_batch(&mut self, position: u64, header: &batch::BatchHeader) -> Result<()> {
        let relative = header.base_offset - self.base_offset;
        debug_assert!(
            relative >= 0,
            "batch {} below segment base {}",
            header.base_offset,
            self.base_offset
        );
        debug_assert!(
            relative <= i64::from(u32::MAX),
            "batch {} too far past base {}",
            header.base_offset,
            self.base_offset
        );
        if position == 0 {
            self.first_batch_timestamp = header.max_timestamp;
        }
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.last_offset();
        }
        // Counters and in-memory entries move even when a file write fails: the files are
        // hints, checked and rebuilt on open.
        let mut written = Ok(());
        if position == 0 || self.bytes_since_index >= self.index_interval_bytes {
            let entry = OffsetEntry { relative_offset: relative as u32, position: position as u32 };
            written = written.and(self.indexes.push_offset(entry));
            written = written.and(self.push_max_timestamp());
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += header.total_bytes as u64;
        written
    }

    /// Adds a time index entry for the max timestamp so far, unless the last one has it.
    fn push_max_timestamp(&mut self) -> Result<()> {
        if self.max_timestamp < 0 {
            return Ok(());
        }
        let relative_offset = (self.offset_of_max_timestamp - self.base_offset) as u32;
        self.indexes.push_time(TimeEntry { timestamp: self.max_timestamp, relative_offset })
    }

    /// Closes the segment when it stops being the active one: its time index gets a last
    /// entry for the segment's max timestamp (as Kafka's), and it is synced with its indexes.
    pub fn close(&mut self) -> Result<()> {
        self.end_time_index();
        if let Err(error) = self.indexes.catch_up() {
            tracing::warn!(
                segment = %self.path.display(),
                %error,
                "index files left empty at close: the next open rebuilds them"
            );
        }
        // A closed segment ends with its last batch, as Kafka trims a preallocated one. The
        // file's own length, not `file_bytes`: a failed write may have left more.
        let length = self.file.metadata().map_err(io("stat segment", &self.path))?.len();
        if length > self.size_bytes {
            self.file.set_len(self.size_bytes).map_err(io("trim segment", &self.path))?;
        }
        self.file_bytes = self.size_bytes;
        self.sync_all()
    }

    /// Ends a closed segment's time index with its max timestamp. A hint: should the write
    /// fail, opening the segment takes the max from the batches after the last offset entry.
    fn end_time_index(&mut self) {
        if let Err(error) = self.push_max_timestamp() {
            tracing::warn!(segment = %self.path.display(), %error, "time index write failed");
        }
    }

    /// Appends validated batches, given as `parts` (patched headers and untouched bodies,
    /// in order, `total_bytes` together) whose base offsets are already assigned.
    pub fn append(
        &mut self,
        parts: &[&[u8]],
        total_bytes: usize,
        headers: &[batch::BatchHeader],
    ) -> Result<()> {
        let Some(first) = headers.first() else { return Ok(()) };
        debug_assert!(
            first.base_offset == self.next_offset,
            "append at {} to segment ending {}",
            first.base_offset,
            self.next_offset
        );
        debug_assert!(
            parts.iter().map(|p| p.len()).sum::<usize>() == total_bytes,
            "parts do not add up to {total_bytes} bytes"
        );
        if let Err(error) = write_all_vectored_at(&self.file, parts, self.size_bytes) {
            // Part of it may be in the file: cut everything after the last batch, zeros
            // written ahead included, so that no whole batch of a refused produce stays
            // for a later open to find (and a full disk gets its space back). Write-ahead
            // stops until the segment rolls, as after its own failure.
            let _ = self.file.set_len(self.size_bytes);
            self.file_bytes = self.size_bytes;
            self.preallocate_bytes = 0;
            return Err(io("write segment", &self.path)(error));
        }
        let start = self.size_bytes;
        let file_bytes_before = self.file_bytes;
        // The batches are in the file: count them before indexing, so a failed index write
        // (a hint, rebuilt on open) leaves the segment's offsets and size consistent.
        self.size_bytes += total_bytes as u64;
        self.file_bytes = self.file_bytes.max(self.size_bytes);
        if self.preallocate_bytes > 0 && self.size_bytes == self.file_bytes {
            self.write_ahead();
        }
        self.next_offset = headers.last().map_or(self.next_offset, |h| h.next_offset());
        let mut position = start;
        // Checked in this order so that an append with its index files in step (every one
        // but during a full disk) reads no clock.
        if self.indexes.files_behind()
            && self.file_bytes > file_bytes_before
            && self.next_catch_up.is_none_or(|due| Instant::now() >= due)
        {
            // The file just grew, so there may be room again for the entries the files
            // missed (appends into zeros written ahead prove nothing: they take no new
            // space). At most once per interval: each try writes every entry. Quiet on
            // failure: the first one warned.
            self.next_catch_up = Some(Instant::now() + INDEX_CATCH_UP_RETRY_INTERVAL);
            match self.indexes.catch_up() {
                Ok(caught_up) if caught_up => {
                    tracing::info!(segment = %self.path.display(), "index files written again");
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(segment = %self.path.display(), %error, "index files still behind")
                }
            }
        }
        for header in headers {
            if let Err(error) = self.index_batch(position, header) {
                // The batches are durable data; the index is a hint rebuilt on open. Failing
                // the produce here would make its retry a duplicate.
                self.warn_index_behind(&error);
            }
            position += header.total_bytes as u64;
        }
        debug_assert!(
            position == self.size_bytes,
            "indexed to {position}, size {}",
            self.size_bytes
        );
        Ok(())
    }

    /// Logs the write that put the index files behind: one line per episode, since the
    /// files take no single entries until they are caught up.
    fn warn_index_behind(&self, error: &crate::Error) {
        tracing::warn!(
            segment = %self.path.display(),
            %error,
            "index files not written (kept in memory; rewritten when a write succeeds, or rebuilt at the next open)"
        );
    }

    /// Writes `preallocate_bytes` of zeros after the last batch, synced with it by the
    /// sync that acknowledges it. Best effort: should the write fail (a full disk), the
    /// batches are in the file, and appends go on growing it without zeros until the
    /// segment rolls (one WARN line, not one per append).
    fn write_ahead(&mut self) {
        static ZEROS: [u8; ZEROS_BUFFER_BYTES] = [0; ZEROS_BUFFER_BYTES];
        let ahead = self.preallocate_bytes.min(self.segment_bytes.saturating_sub(self.file_bytes));
        let mut parts = Vec::new();
        let mut left = ahead;
        while left > 0 {
            let part = left.min(ZEROS_BUFFER_BYTES as u64);
            parts.push(ZEROS.get(..part as usize).unwrap_or_default());
            left -= part;
        }
        if parts.is_empty() {
            return;
        }
        match write_all_vectored_at(&self.file, &parts, self.file_bytes) {
            Ok(()) => self.file_bytes += ahead,
            Err(error) => {
                // Some of them may be in the file: cut them (should that fail too, the roll
                // or recovery cuts whatever follows the last batch).
                let cut = self.file.set_len(self.size_bytes).err().map(|e| e.to_string());
                tracing::warn!(
                    segment = %self.path.display(),
                    %error,
                    cut_error = cut.as_deref().unwrap_or("none"),
                    "zeros not written ahead (preallocate); appends go on growing the file"
                );
                self.file_bytes = self.size_bytes;
                self.preallocate_bytes = 0;
            }
        }
    }

    /// Visits every batch in the segment with its header, in order (read in chunks).
    pub fn for_each_batch(
        &self,
        visit: impl FnMut(u64, &batch::BatchHeader, &[u8]) -> Result<()>,
    ) -> Result<()> {
        self.scan((0, self.base_offset), self.size_bytes, false, visit).map(|_| ())
    }

    /// Syncs the log file and indexes (on roll and shutdown).
    pub fn sync_all(&self) -> Result<()> {
        self.file.sync_data().map_err(io("sync segment", &self.path))?;
        self.indexes.sync()
    }

    /// Removes the segment's files.
    pub fn delete_files(&self) -> Result<()> {
        std::fs::remove_file(&self.path).map_err(io("delete segment", &self.path))?;
        self.indexes.delete_files()
    }

    /// The byte position and header of the batch holding `offset`, scanning forward from
    /// the index hint. `None` when `offset` is at or past the segment's end.
    pub fn position_of(
        file: &File,
        path: &Path,
        hint: u64,
        size_bytes: u64,
        offset: i64,
        wait: Wait,
    ) -> Result<Option<(u64, BatchHeader)>> {
        let mut position = hint;
        let mut header = [0u8; sluice_wire::limits::BATCH_HEADER_BYTES];
        while position < size_bytes {
            read_exact_at(file, path, &mut header, position, wait)?;
            let parsed = batch::parse_header(&header).map_err(Error::InvalidBatch)?;
            if parsed.next_offset() > offset {
                return Ok(Some((position, parsed)));
            }
            position += parsed.total_bytes as u64;
        }
        Ok(None)
    }
}

/// Whether a read may wait for the disk. A fetch on an async worker reads only what the page
/// cache holds, so that a consumer far behind does not stall every connection of that
/// worker; what must come from the disk it reads again on a blocking thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Read from the disk when the page cache does not hold the bytes.
    ForDisk,
    /// Read only what the page cache holds (`preadv2` with `RWF_NOWAIT`); anything else is
    /// [`Error::NotCached`].
    CachedOnly,
}

/// Reads `buf.len()` bytes of `file` at `position`, from the page cache only when `wait` is
/// [`Wait::CachedOnly`].
pub(crate) fn read_exact_at(
    file: &File,
    path: &Path,
    buf: &mut [u8],
    position: u64,
    wait: Wait,
) -> Result<()> {
    if wait == Wait::ForDisk {
        return file.read_exact_at(buf, position).map_err(io("read segment", path));
    }
    match read_cached_at(file, buf, position) {
        (done, _) if done >= buf.len() => Ok(()),
        // No RWF_NOWAIT for this kernel or file system (EOPNOTSUPP, EINVAL, ENOSYS): read
        // as before it existed, waiting here, rather than send every fetch to the blocking
        // pool.
        (done, Some(_)) => {
            let rest = buf.get_mut(done..).unwrap_or_default();
            file.read_exact_at(rest, position + done as u64).map_err(io("read segment", path))
        }
        // Not cached, or past the end: the read that may wait says which.
        (_, None) => Err(Error::NotCached { path: path.to_path_buf(), position }),
    }
}

/// Reads into `buf` what the page cache holds of `file` from `position` on, without waiting
/// for the disk (`preadv2` with `RWF_NOWAIT`): how many bytes it read, from the start of
/// `buf`, and the error that stopped it when that error says the kernel or the file system
/// cannot read without waiting (not when a page was missing, or the file ended).
pub(crate) fn read_cached_at(
    file: &File,
    buf: &mut [u8],
    position: u64,
) -> (usize, Option<rustix::io::Errno>) {
    let mut done = 0usize;
    while let Some(rest) = buf.get_mut(done..).filter(|rest| !rest.is_empty()) {
        let mut slices = [std::io::IoSliceMut::new(rest)];
        let at = position + done as u64;
        match rustix::io::preadv2(file, &mut slices, at, rustix::io::ReadWriteFlags::NOWAIT) {
            Ok(n) if n > 0 => done += n,
            Ok(_) | Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => break,
            Err(unsupported) => return (done, Some(unsupported)),
        }
    }
    (done.min(buf.len()), None)
}

/// `iovec`s per `pwritev` call (Linux's `IOV_MAX`).
const IOV_MAX_COUNT: usize = 1024;

/// Writes every part, in order, at `offset` with `pwritev`, looping over short writes.
fn write_all_vectored_at(file: &File, parts: &[&[u8]], mut offset: u64) -> std::io::Result<()> {
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;
    let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
    let mut pending: &mut [IoSlice<'_>] = &mut slices;
    while !pending.is_empty() {
        let count = pending.len().min(IOV_MAX_COUNT);
        let at = libc::off_t::try_from(offset).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        // SAFETY: IoSlice is ABI-compatible with iovec on Unix (std documents it), `count`
        // slices are valid for reads for the call, and the fd is open for the file's life.
        let written = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                pending.as_ptr().cast::<libc::iovec>(),
                count as i32,
                at,
            )
        };
        if written < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        offset += written as u64;
        IoSlice::advance_slices(&mut pending, written as usize);
    }
    Ok(())
}
