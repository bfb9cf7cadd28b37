//! `sluice logs FUNCTION --follow` against a log file changed under it as the function log
//! changes it: lines appended, a line the disk had no room for written in part and cut back
//! (see `sluice_functions::log`), and the file replaced (a deleted data folder).
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::SLUICE_BIN;

/// How long a printed line may take: the follower looks every 200 ms.
const LINE_LIMIT: Duration = Duration::from_secs(5);
/// Long enough for the follower to look at the file at least twice.
const POLLS: Duration = Duration::from_millis(600);

/// The follower, killed when the test ends, failed or not (it never ends by itself).
struct Follower(std::process::Child);

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn append(path: &std::path::Path, text: &str) {
    let mut file = std::fs::OpenOptions::new().append(true).open(path).expect("log opens");
    file.write_all(text.as_bytes()).expect("log written");
}

#[test]
fn follow_prints_whole_lines_through_a_cut_and_a_replaced_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let functions = dir.path().join("functions");
    std::fs::create_dir_all(&functions).expect("functions folder");
    let path = functions.join("f.log");
    std::fs::write(&path, "first\n").expect("log");
    let mut follower = Follower(
        Command::new(SLUICE_BIN)
            .args(["logs", "f", "--follow", "--data-dir"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("sluice logs starts"),
    );
    let stdout = follower.0.stdout.take().expect("piped stdout");
    let (lines, printed) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let next = |what: &str| {
        printed.recv_timeout(LINE_LIMIT).unwrap_or_else(|_| panic!("no line printed: {what}"))
    };
    assert_eq!(next("the first"), "first");

    // A line written in part, seen by the follower, then cut back and followed by another.
    append(&path, "half a li");
    std::thread::sleep(POLLS);
    let whole = std::fs::metadata(&path).expect("log").len() - "half a li".len() as u64;
    std::fs::OpenOptions::new().write(true).open(&path).expect("log").set_len(whole).expect("cut");
    append(&path, "second\n");
    assert_eq!(next("after the cut"), "second");

    // Replaced: read from the start.
    std::fs::remove_file(&path).expect("log removed");
    std::fs::write(&path, "third\n").expect("new log");
    assert_eq!(next("from the new file"), "third");
    std::thread::sleep(POLLS);
    assert!(printed.try_recv().is_err(), "a line printed twice or torn");
}
