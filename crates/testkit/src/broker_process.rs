//! A real `sluice broker` process on port 0, for integration tests.
//!
//! [`BrokerProcess`] owns the child process and a scratch [`TempDir`] that holds the broker's
//! stderr (`broker.log`) and, unless the caller names one, the data folder.
//!
//! Invariants:
//! - while `child` is `Some`, `addr` is the address that child printed on its listening line;
//! - the data folder is the same for every run, so a restarted broker recovers the same log;
//! - `broker.log` is appended to across restarts, each run opened by a `testkit:` marker line;
//! - dropping a [`BrokerProcess`] kills (SIGKILL) and reaps the child, so a panicking test
//!   leaks no broker.
//!
//! Limits: startup waits [`STARTUP_TIMEOUT`] for the listening line and stop waits
//! [`STOP_TIMEOUT`] after SIGTERM (see [`crate::limits`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::thread;
use std::time::Instant;

use tempfile::TempDir;

use crate::limits::{
    ERROR_LOG_LINES_MAX, LISTENING_LINE_BYTES_MAX, LOG_TAIL_BYTES_MAX, STARTUP_TIMEOUT,
    STOP_POLL_INTERVAL, STOP_TIMEOUT,
};

/// The listener every test broker binds: loopback, port chosen by the OS.
const LISTENER: &str = "PLAINTEXT://127.0.0.1:0";

/// A running (or stopped) `sluice broker` child process with its own data folder.
///
/// Starts listening on a free loopback port; [`BrokerProcess::bootstrap`] gives the
/// `host:port` for clients. After [`BrokerProcess::stop`] or [`BrokerProcess::kill9`],
/// [`BrokerProcess::restart`] starts it again on the same data folder and a new port.
#[derive(Debug)]
pub struct BrokerProcess {
    /// The `sluice` binary.
    bin: PathBuf,
    /// The broker's data folder; the same across restarts.
    data_dir: PathBuf,
    /// Holds `broker.log` and, for [`BrokerProcess::start`], the data folder. Removed on drop,
    /// after the child is killed.
    scratch: TempDir,
    /// The running child; `None` once it was stopped or killed and reaped.
    child: Option<Child>,
    /// The address from the last listening line.
    addr: SocketAddr,
    /// How many times the broker was started, counting the first start.
    run_count: u32,
    /// Broker properties passed as `--override KEY=VALUE` on every start.
    overrides: Vec<String>,
}

impl BrokerProcess {
    /// Starts `bin broker` with a fresh temporary data folder and waits for its listening line.
    pub fn start(bin: &Path) -> io::Result<BrokerProcess> {
        Self::start_with_overrides(bin, &[])
    }

    /// Like [`BrokerProcess::start`], with broker properties (`key`, `value`) passed as
    /// `--override key=value` on this start and every restart.
    pub fn start_with_overrides(
        bin: &Path,
        overrides: &[(&str, &str)],
    ) -> io::Result<BrokerProcess> {
        let scratch = scratch_dir()?;
        let data_dir = scratch.path().join("data");
        let overrides = overrides.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Self::start_with_scratch(bin, data_dir, scratch, overrides)
    }

    /// Starts `bin broker` on `data_dir` (created if missing) and waits for its listening line.
    /// The folder is not removed on drop; `broker.log` still goes to a temporary folder.
    pub fn start_in(bin: &Path, data_dir: PathBuf) -> io::Result<BrokerProcess> {
        Self::start_with_scratch(bin, data_dir, scratch_dir()?, Vec::new())
    }

    fn start_with_scratch(
        bin: &Path,
        data_dir: PathBuf,
        scratch: TempDir,
        overrides: Vec<String>,
    ) -> io::Result<BrokerProcess> {
        fs::create_dir_all(&data_dir).map_err(|error| {
            io::Error::new(error.kind(), format!("creating {}: {error}", data_dir.display()))
        })?;
        let mut broker = BrokerProcess {
            bin: bin.to_path_buf(),
            data_dir,
            scratch,
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            run_count: 0,
            overrides,
        };
        broker.spawn(LISTENER)?;
        Ok(broker)
    }

    /// The `host:port` clients bootstrap from (`bootstrap.servers`).
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The socket address of the listener, for [`crate::raw::RawConn::connect`].
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The broker's data folder.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The file the broker's stderr goes to, across every restart.
    pub fn log_path(&self) -> PathBuf {
        self.scratch.path().join("broker.log")
    }

    /// The process id of the running broker, or `None` once it was stopped or killed.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How many times the broker was started, counting the first start.
    pub fn run_count(&self) -> u32 {
        self.run_count
    }

    /// Kills the broker with SIGKILL, as a crash or `kill -9` would, and reaps it.
    pub fn kill9(&mut self) -> io::Result<()> {
        let mut child = self.child.take().ok_or_else(not_running)?;
        // `Child::kill` sends SIGKILL on unix. It fails only if the child was already reaped,
        // which `take()` above rules out; an already-exited child is still reaped by `wait`.
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Sends SIGTERM and waits up to [`STOP_TIMEOUT`] for a clean exit, returning its status.
    /// If the broker does not exit in time it is killed and the error quotes its log tail.
    pub fn stop(&mut self) -> io::Result<ExitStatus> {
        let mut child = self.child.take().ok_or_else(not_running)?;
        let pid = libc::pid_t::try_from(child.id()).map_err(|error| {
            io::Error::new(io::ErrorKind::InvalidData, format!("pid {}: {error}", child.id()))
        })?;
        // SAFETY: kill(2) takes no pointers. `pid` is our own child, not yet reaped, so the
        // id cannot have been reused by another process.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                child.kill()?;
                child.wait()?;
                return Err(self.error_with_log(
                    io::ErrorKind::TimedOut,
                    &format!("broker did not exit within {STOP_TIMEOUT:?} of SIGTERM"),
                ));
            }
            thread::sleep(STOP_POLL_INTERVAL);
        }
    }

    /// Starts the broker again on the same data folder after [`BrokerProcess::stop`] or
    /// [`BrokerProcess::kill9`]. It listens on a new port: read [`BrokerProcess::bootstrap`]
    /// again afterwards.
    pub fn restart(&mut self) -> io::Result<()> {
        if self.child.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "restart() needs a stopped broker: call stop() or kill9() first",
            ));
        }
        self.spawn(LISTENER)
    }

    /// Like [`BrokerProcess::restart`], but on the port it listened on before, so running
    /// clients reconnect to it as they would to a restarted Kafka broker. Fails if another
    /// process took the port meanwhile.
    pub fn restart_on_same_port(&mut self) -> io::Result<()> {
        if self.child.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "restart_on_same_port() needs a stopped broker: call stop() or kill9() first",
            ));
        }
        let listener = format!("PLAINTEXT://{}", self.addr);
        self.spawn(&listener)
    }

    /// The end of `broker.log` (at most [`LOG_TAIL_BYTES_MAX`], starting at a line boundary),
    /// for diagnostics and for tests that check what the broker logged.
    pub fn log_tail(&self) -> String {
        read_tail(&self.log_path(), LOG_TAIL_BYTES_MAX)
            .unwrap_or_else(|error| format!("<cannot read broker.log: {error}>"))
    }

    /// Spawns the child and waits for its listening line. On failure no child is left running.
    fn spawn(&mut self, listener: &str) -> io::Result<()> {
        assert!(self.child.is_none(), "spawn() with a child still running");
        self.run_count += 1;
        let mut log = OpenOptions::new().create(true).append(true).open(self.log_path())?;
        writeln!(log, "testkit: starting broker run {} on {}", self.run_count, listener)?;
        let mut command = Command::new(&self.bin);
        command
            .arg("broker")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listeners")
            .arg(listener);
        for property in &self.overrides {
            command.arg("--override").arg(property);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|error| {
                io::Error::new(error.kind(), format!("spawning {}: {error}", self.bin.display()))
            })?;
        let stdout = child.stdout.take().expect("stdout is piped by the Command above");
        let (line_tx, line_rx) = mpsc::sync_channel(1);
        thread::Builder::new()
            .name("sluice-broker-stdout".to_string())
            .spawn(move || forward_listening_line(stdout, line_tx))?;
        let outcome = match line_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Ok(line)) => parse_listening_line(&line).ok_or_else(|| {
                format!("cannot parse a PLAINTEXT host:port from the listening line {line:?}")
            }),
            Ok(Err(error)) => Err(format!("reading the broker's stdout: {error}")),
            Err(RecvTimeoutError::Timeout) => {
                Err(format!("no listening line within {STARTUP_TIMEOUT:?}"))
            }
            Err(RecvTimeoutError::Disconnected) => Err(exit_message(&mut child)),
        };
        match outcome {
            Ok(addr) => {
                self.addr = addr;
                self.child = Some(child);
                Ok(())
            }
            Err(message) => {
                // Best effort: the child may already have exited, and the error that matters
                // is the startup failure below.
                let _ = child.kill();
                let _ = child.wait();
                let kind = io::ErrorKind::Other;
                Err(self.error_with_log(kind, &format!("broker failed to start: {message}")))
            }
        }
    }

    /// An error whose message ends with the last lines of `broker.log`.
    fn error_with_log(&self, kind: io::ErrorKind, message: &str) -> io::Error {
        let tail = self.log_tail();
        let lines: Vec<&str> = tail.lines().collect();
        let start = lines.len().saturating_sub(ERROR_LOG_LINES_MAX);
        let quoted = lines.get(start..).unwrap_or_default().join("\n");
        io::Error::new(
            kind,
            format!("{message} (bin {}); broker.log tail:\n{quoted}", self.bin.display()),
        )
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Best effort: a drop cannot report errors, and a child that already exited only
            // needs the wait to be reaped.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn scratch_dir() -> io::Result<TempDir> {
    tempfile::Builder::new().prefix("sluice-testkit-").tempdir()
}

fn not_running() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "the broker is not running")
}

/// Sends the first stdout line (or the read error) to the starter, then drains stdout so a
/// chatty broker never blocks on a full pipe. A clean EOF before any line drops the sender,
/// which the starter sees as `Disconnected`.
fn forward_listening_line(stdout: ChildStdout, line_tx: SyncSender<io::Result<String>>) {
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    let first = (&mut reader).take(LISTENING_LINE_BYTES_MAX).read_line(&mut line);
    match first {
        Ok(0) => return,
        Ok(_) => {
            // The starter may have timed out and gone; then nobody needs the line.
            let _ = line_tx.send(Ok(line));
        }
        Err(error) => {
            let _ = line_tx.send(Err(error));
            return;
        }
    }
    drop(line_tx);
    // Output after the listening line is not part of the contract; discard it until EOF.
    let _ = io::copy(&mut reader, &mut io::sink());
}

/// Describes why a child closed stdout without printing its listening line.
fn exit_message(child: &mut Child) -> String {
    match child.wait() {
        Ok(status) => format!("the broker exited ({status}) before printing its listening line"),
        Err(error) => format!("the broker closed stdout before its listening line: {error}"),
    }
}

/// Parses `sluice broker listening on PLAINTEXT://HOST:PORT (data dir DIR)`.
fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("PLAINTEXT://")?;
    let host_port = rest.split_whitespace().next()?;
    host_port.parse().ok()
}

/// The last `bytes_max` bytes of the file at `path`, starting at a line boundary.
fn read_tail(path: &Path, bytes_max: u64) -> io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(bytes_max);
    file.seek(SeekFrom::Start(start))?;
    // Read exactly the bytes present when we looked; the broker may append meanwhile.
    let count = usize::try_from(len - start).expect("at most LOG_TAIL_BYTES_MAX bytes");
    let mut bytes = vec![0u8; count];
    file.read_exact(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    if start == 0 {
        return Ok(text.into_owned());
    }
    // The seek may have landed mid-line; drop that partial first line.
    Ok(text.split_once('\n').map(|(_, rest)| rest).unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_listening_line() {
        let line = "sluice broker listening on PLAINTEXT://127.0.0.1:40123 (data dir /tmp/x)\n";
        assert_eq!(parse_listening_line(line), Some(SocketAddr::from(([127, 0, 0, 1], 40123))));
    }

    #[test]
    fn rejects_a_line_without_an_address() {
        assert_eq!(parse_listening_line("sluice broker starting\n"), None);
        assert_eq!(parse_listening_line("listening on PLAINTEXT://nowhere (data dir x)"), None);
    }

    #[test]
    fn reads_the_tail_from_a_line_boundary() {
        let dir = scratch_dir().expect("a temp dir can be created");
        let path = dir.path().join("log");
        fs::write(&path, "first line\nsecond line\nthird\n").expect("the temp dir is writable");
        assert_eq!(
            read_tail(&path, 1024).expect("file exists"),
            "first line\nsecond line\nthird\n"
        );
        assert_eq!(read_tail(&path, 10).expect("file exists"), "third\n");
    }

    #[test]
    fn reports_a_binary_that_exits_without_listening() {
        let error = BrokerProcess::start(Path::new("/bin/true")).expect_err("true never listens");
        assert!(error.to_string().contains("before printing its listening line"), "{error}");
    }

    /// A stand-in broker: prints the listening line, then sleeps until signalled. It lets the
    /// lifecycle be tested without the real broker.
    const FAKE_BROKER: &str = "#!/bin/sh\n\
        echo \"sluice broker listening on PLAINTEXT://127.0.0.1:9 (data dir $3)\"\n\
        exec sleep 60\n";

    #[test]
    fn stops_kills_and_restarts_on_the_same_data_dir() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch_dir().expect("a temp dir can be created");
        let bin = dir.path().join("fake-broker");
        fs::write(&bin, FAKE_BROKER).expect("the temp dir is writable");
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("we own the file");
        let data_dir = dir.path().join("data");
        let mut broker = BrokerProcess::start_in(&bin, data_dir.clone()).expect("fake starts");
        assert_eq!(broker.bootstrap(), "127.0.0.1:9");
        assert!(broker.restart().is_err(), "restart needs a stopped broker");
        let status = broker.stop().expect("sleep exits on SIGTERM");
        assert!(!status.success(), "SIGTERM ends sleep by signal: {status}");
        broker.restart().expect("fake restarts");
        assert_eq!(broker.run_count(), 2);
        broker.kill9().expect("SIGKILL ends sleep");
        assert!(broker.kill9().is_err(), "a killed broker cannot be killed again");
        broker.restart().expect("fake restarts after kill9");
        assert_eq!(broker.data_dir(), data_dir.as_path());
        assert!(
            broker.log_tail().contains("testkit: starting broker run 3"),
            "{}",
            broker.log_tail()
        );
    }

    #[test]
    fn reports_a_missing_binary() {
        let error = BrokerProcess::start(Path::new("/nonexistent/sluice")).expect_err("no binary");
        assert_eq!(error.kind(), io::ErrorKind::NotFound, "{error}");
    }
}
