//! A function's log: what CloudWatch Logs would hold for a Lambda function. One file per
//! function (`<log dir>/<function>.log`), one line per event, each starting with a UTC
//! timestamp; invocations are framed by Lambda's `START`, `END` and `REPORT` lines, and
//! every line the handler prints carries the invocation's request id, so
//! `sluice logs FUNCTION` reads like the Lambda console.
//!
//! Writes are appends of whole lines under a mutex. A write error (a full disk, say) must
//! not stop records from being handled, so the line is dropped: the part of it that was
//! written is cut off, so no torn line stays; `tracing` says so once when a run of failures
//! starts and once when writes work again, and the log itself then gets a line saying how
//! many lines are missing and why.
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// The log file of one function.
pub struct FunctionLog {
    function: String,
    path: PathBuf,
    writer: Mutex<Writer>,
}

/// The open file and the state of its writes.
struct Writer {
    file: File,
    /// Set while writes fail.
    failing: Option<Failing>,
}

/// A run of failed writes.
struct Failing {
    /// Lines dropped so far.
    dropped: u64,
    /// The first failure's error.
    error: String,
    /// The cut after a failed write failed too: the file may end inside a line.
    torn: bool,
}

impl FunctionLog {
    /// Opens (creating) `<dir>/<function>.log` for appending.
    pub fn open(dir: &Path, function: &str) -> Result<FunctionLog> {
        let io =
            |what: String| move |source| Error::Io { function: function.to_string(), what, source };
        std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
        let path = log_path(dir, function);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(format!("cannot open {}", path.display())))?;
        Ok(FunctionLog {
            function: function.to_string(),
            path,
            writer: Mutex::new(Writer { file, failing: None }),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `START RequestId: <id> Version: $LATEST`.
    pub fn start(&self, request_id: &str) {
        self.line(&format!("START RequestId: {request_id} Version: $LATEST"));
    }

    /// `END RequestId: <id>` and the `REPORT` line with the duration.
    pub fn end(&self, request_id: &str, duration: Duration, memory_mb: u32) {
        let ms = duration.as_secs_f64() * 1000.0;
        self.line(&format!("END RequestId: {request_id}"));
        self.line(&format!(
            "REPORT RequestId: {request_id}\tDuration: {ms:.2} ms\tBilled Duration: {} ms\t\
             Memory Size: {memory_mb} MB",
            ms.ceil() as u64
        ));
    }

    /// A line the handler printed, or sluice's note about the invocation.
    pub fn output(&self, request_id: &str, text: &str) {
        for line in text.lines() {
            self.line(&format!("{request_id}\t{line}"));
        }
    }

    /// A line with the timestamp prepended.
    pub fn line(&self, text: &str) {
        let now = utc_timestamp(SystemTime::now());
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut stamped = String::new();
        if let Some(failing) = &writer.failing {
            if failing.torn {
                stamped.push('\n');
            }
            stamped.push_str(&format!(
                "{now}\t[sluice] {} lines of this log were dropped: cannot write it: {}\n",
                failing.dropped, failing.error
            ));
        }
        stamped.push_str(&format!("{now}\t{text}\n"));
        // Where a failed write is cut back to: the file's own length, whoever wrote it.
        let before = writer.file.metadata().map(|m| m.len());
        match writer.file.write_all(stamped.as_bytes()) {
            Ok(()) => {
                if let Some(failing) = writer.failing.take() {
                    tracing::info!(function = %self.function, path = %self.path.display(),
                        dropped = failing.dropped, "the function log is written again");
                }
            }
            Err(error) => {
                // Cut what part of the line was written; shortening a file needs no space.
                let torn = before.and_then(|len| writer.file.set_len(len)).is_err();
                match &mut writer.failing {
                    Some(failing) => {
                        failing.dropped += 1;
                        // A cut back to a file that already ended inside a line leaves it so.
                        failing.torn |= torn;
                    }
                    None => {
                        tracing::warn!(function = %self.function, path = %self.path.display(),
                            %error, "cannot write the function log; its lines are dropped until \
                            it can be written again");
                        writer.failing =
                            Some(Failing { dropped: 1, error: error.to_string(), torn });
                    }
                }
            }
        }
    }
}

/// Where a function's log is.
pub fn log_path(dir: &Path, function: &str) -> PathBuf {
    dir.join(format!("{function}.log"))
}

/// `2026-11-26T21:36:50.123Z`.
pub fn utc_timestamp(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso_8601_utc() {
        let at = UNIX_EPOCH + Duration::from_millis(1_545_084_650_987);
        assert_eq!(utc_timestamp(at), "2018-12-17T22:10:50.987Z");
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc_timestamp(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn invocations_are_framed_like_cloudwatch() {
        let dir = tempfile::tempdir().unwrap();
        let log = FunctionLog::open(dir.path(), "f").unwrap();
        log.start("r-1");
        log.output("r-1", "hello\nworld");
        log.end("r-1", Duration::from_millis(12), 128);
        let text = std::fs::read_to_string(log.path()).unwrap();
        let lines: Vec<&str> = text.lines().map(|l| l.split_once('\t').unwrap().1).collect();
        assert_eq!(lines[0], "START RequestId: r-1 Version: $LATEST");
        assert_eq!(lines[1], "r-1\thello");
        assert_eq!(lines[2], "r-1\tworld");
        assert_eq!(lines[3], "END RequestId: r-1");
        assert!(lines[4].starts_with("REPORT RequestId: r-1\tDuration: 12.00 ms"), "{}", lines[4]);
    }

    /// Needs root: it mounts a small tmpfs, as the test command does for the broker's
    /// full-disk tests.
    #[test]
    fn a_full_disk_drops_whole_lines_and_the_log_says_how_many() {
        let disk = sluice_testkit::SmallDisk::mount(1 << 20).expect("a small tmpfs mounts");
        let log = FunctionLog::open(disk.path(), "f").unwrap();
        log.line("before");
        disk.fill("ballast").unwrap();
        // The file's last page has room for a few lines, then one is written in part.
        let attempts = 200;
        let pad = "y".repeat(80);
        for n in 0..attempts {
            log.line(&format!("full {n:03} {pad}"));
        }
        std::fs::remove_file(disk.path().join("ballast")).unwrap();
        log.line("after");

        let text = std::fs::read_to_string(log.path()).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .map(|l| l.split_once('\t').expect("a timestamp on every line").1)
            .collect();
        assert_eq!(lines.first(), Some(&"before"));
        assert_eq!(lines.last(), Some(&"after"));
        let full: Vec<&&str> = lines.iter().filter(|l| l.starts_with("full ")).collect();
        assert!(full.iter().all(|l| l.len() == "full 000 ".len() + pad.len()), "a torn line");
        assert!(full.len() < attempts, "the disk never refused a line");
        let note = lines[lines.len() - 2];
        let dropped: usize = note
            .strip_prefix("[sluice] ")
            .and_then(|rest| rest.split_once(' '))
            .and_then(|(count, _)| count.parse().ok())
            .unwrap_or_else(|| panic!("no note on the dropped lines: {note}"));
        assert_eq!(full.len() + dropped, attempts, "{note}");
        assert!(note.contains("No space left on device"), "{note}");
    }
}
