//! `sluice bench --fill-page-cache`: put the machine's memory in the state a broker that
//! has run for a while finds it, before the broker runs.
//!
//! A log keeps what it writes, so its page cache grows. Until the cache fills the memory,
//! every page the log writes is a page of free memory. On a VM that hands free memory back
//! to its host (virtio-balloon free page reporting, as on this Firecracker VM), such a page
//! is faulted in from the host on its first write, and the copy into the page cache, not
//! the disk, sets the pace: 300 to 450 MiB/s here against 1.2 to 4.8 GB/s for memory the
//! kernel just freed or reclaimed from the cache (`docs/benchmarks.md`). A broker that has written more
//! than the machine's memory writes into reclaimed pages only; a broker on a fresh VM, as
//! every benchmark run is, does not.
//!
//! The fill writes one file, as large as the free memory plus a margin, and syncs it, so
//! its pages are clean and the cheapest to reclaim, and keeps it until the scratch folder
//! is removed. The runs after it write into memory reclaimed from that file.
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::disk::pattern;
use super::limits::{
    DISK_NAIVE_WRITE_BYTES, MIB, PAGE_CACHE_FILL_MARGIN_BYTES, PAGE_CACHE_FILL_SPARE_DISK_BYTES,
};
use super::Progress;

/// Bytes per GiB, for messages.
const GIB: f64 = (1024 * MIB) as f64;

/// What the fill did.
#[derive(Debug, Clone, Serialize)]
pub struct PageCacheFill {
    /// Bytes written (and synced) to the fill file.
    pub bytes: u64,
    /// Seconds the fill took, its sync included.
    pub secs: f64,
    /// `MemFree` before the fill, bytes.
    pub free_before_bytes: u64,
    /// `MemFree` right after it, bytes.
    pub free_after_bytes: u64,
}

/// Writes and syncs a file in `dir` of the free memory plus a margin; refuses when the
/// filesystem could not also hold `runs_bytes` (what the runs after it write).
pub fn fill(dir: &Path, runs_bytes: u64, progress: &Progress) -> Result<PageCacheFill> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let free_before_bytes = mem_free_bytes()?;
    let bytes = free_before_bytes + PAGE_CACHE_FILL_MARGIN_BYTES;
    let available = available_disk_bytes(dir)?;
    let needed = bytes + runs_bytes + PAGE_CACHE_FILL_SPARE_DISK_BYTES;
    if available < needed {
        bail!(
            "--fill-page-cache needs {:.1} GiB free in {} (the free memory plus a margin, then \
             the runs), but it has {:.1} GiB: run without --fill-page-cache, or pass a \
             --data-dir with more room",
            needed as f64 / GIB,
            dir.display(),
            available as f64 / GIB,
        );
    }
    let path = dir.join("fill.probe");
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let write = pattern(DISK_NAIVE_WRITE_BYTES);
    let bar = progress.bytes("filling the page cache", bytes);
    let started = Instant::now();
    let mut written = 0;
    while written < bytes {
        file.write_all(&write).with_context(|| format!("cannot write {}", path.display()))?;
        written += write.len() as u64;
        bar.inc(write.len() as u64);
    }
    file.sync_data().with_context(|| format!("cannot sync {}", path.display()))?;
    bar.finish_and_clear();
    Ok(PageCacheFill {
        bytes: written,
        secs: started.elapsed().as_secs_f64(),
        free_before_bytes,
        free_after_bytes: mem_free_bytes()?,
    })
}

/// `MemFree` of `/proc/meminfo`, in bytes.
fn mem_free_bytes() -> Result<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").context("cannot read /proc/meminfo")?;
    meminfo_field(&meminfo, "MemFree:").context("/proc/meminfo has no MemFree line")
}

/// A `kB` field of `/proc/meminfo`, in bytes.
fn meminfo_field(meminfo: &str, name: &str) -> Option<u64> {
    let line = meminfo.lines().find_map(|line| line.strip_prefix(name))?;
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// Bytes an unprivileged writer may still use in the filesystem holding `dir`.
fn available_disk_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .with_context(|| format!("{} has a NUL byte", dir.display()))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `stat` points to writable memory of
    // the size statvfs(3) fills.
    let failed = unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) } != 0;
    if failed {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot statvfs {}", dir.display()));
    }
    // SAFETY: statvfs(3) succeeded, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    // Both fields are narrower than u64 on some 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    let (blocks, block_bytes) = (stat.f_bavail as u64, stat.f_frsize as u64);
    Ok(blocks.saturating_mul(block_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_meminfo_field_in_bytes() {
        let meminfo = "MemTotal:       24684084 kB\nMemFree:        23546164 kB\n";
        assert_eq!(meminfo_field(meminfo, "MemFree:"), Some(23546164 * 1024));
        assert_eq!(meminfo_field(meminfo, "Cached:"), None);
    }

    #[test]
    fn this_filesystem_has_room() {
        assert!(available_disk_bytes(Path::new(".")).unwrap() > 0);
    }
}
