//! The broker under test: this same binary started as `sluice broker` in its own process,
//! so its memory can be read from `/proc/<pid>/status` apart from the clients'.
//!
//! The broker listens on port 0 and the bootstrap address is read from the one line it
//! prints on start. It logs warnings only (to this process's stderr) and is killed when the
//! handle drops, so an error in the benchmark never leaves a broker behind.
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use super::limits::BROKER_START_SECS_MAX;

/// A running `sluice broker` child process.
pub struct BrokerProcess {
    child: Child,
    /// `HOST:PORT` to bootstrap from.
    pub bootstrap: String,
}

impl BrokerProcess {
    /// Starts `sluice broker --data-dir DIR --listeners PLAINTEXT://127.0.0.1:0`, with
    /// `--override KEY=VALUE` for each of `overrides`, and waits for its listening line.
    pub fn start_with(data_dir: &Path, overrides: &[&str]) -> Result<BrokerProcess> {
        let exe = std::env::current_exe().context("cannot locate the sluice binary")?;
        let mut command = Command::new(&exe);
        command
            .arg("broker")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listeners", "PLAINTEXT://127.0.0.1:0"]);
        for setting in overrides {
            command.args(["--override", setting]);
        }
        let mut child = command
            .env("SLUICE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {} broker", exe.display()))?;
        let stdout = child.stdout.take().expect("stdout was piped above");
        // The line is read on a thread so a broker that hangs before printing it is a
        // timeout, not a hang of the benchmark.
        let (sender, receiver) = mpsc::sync_channel(1);
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = sender.send(read);
        });
        let mut broker = BrokerProcess { child, bootstrap: String::new() };
        let line = receiver
            .recv_timeout(Duration::from_secs(BROKER_START_SECS_MAX))
            .map_err(|_| {
                anyhow!("the broker printed no listening line in {BROKER_START_SECS_MAX} s")
            })?
            .context("cannot read the broker's stdout")?;
        broker.bootstrap = bootstrap_from(&line)?;
        Ok(broker)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size now (`VmRSS`), bytes.
    pub fn rss_bytes(&self) -> Result<u64> {
        status_kib(self.pid(), "VmRSS:").map(|kib| kib * 1024)
    }

    /// Peak resident set size since start (`VmHWM`), bytes.
    pub fn peak_rss_bytes(&self) -> Result<u64> {
        status_kib(self.pid(), "VmHWM:").map(|kib| kib * 1024)
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        // The data folder is scratch, so there is nothing a clean shutdown would save.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, 100 on every Linux
/// target sluice builds for (the binary does not link libc to ask `sysconf`).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// CPU used during a run, in cores: CPU seconds per wall-clock second, so 2.0 is both cores
/// of a 2-CPU machine.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuUse {
    /// The broker process.
    pub broker_cores: f64,
    /// This process: the benchmark's rdkafka clients and their librdkafka threads.
    pub clients_cores: f64,
}

/// Measures [`CpuUse`] from `start` to `stop`.
pub struct CpuMeter {
    broker_pid: u32,
    broker_secs: f64,
    clients_secs: f64,
    started: Instant,
}

impl CpuMeter {
    /// Notes the CPU time used so far by the broker `broker_pid` and by this process.
    pub fn start(broker_pid: u32) -> Result<CpuMeter> {
        Ok(CpuMeter {
            broker_pid,
            broker_secs: cpu_secs(&broker_pid.to_string())?,
            clients_secs: cpu_secs("self")?,
            started: Instant::now(),
        })
    }

    /// CPU used since `start`.
    pub fn stop(&self) -> Result<CpuUse> {
        let wall_secs = self.started.elapsed().as_secs_f64();
        let broker_secs = cpu_secs(&self.broker_pid.to_string())? - self.broker_secs;
        let clients_secs = cpu_secs("self")? - self.clients_secs;
        Ok(CpuUse {
            broker_cores: broker_secs / wall_secs,
            clients_cores: clients_secs / wall_secs,
        })
    }
}

/// User plus system CPU seconds of `/proc/<pid>/stat` (all threads).
fn cpu_secs(pid: &str) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name (field 2) may hold spaces and parentheses; fields after its closing
    // parenthesis start at field 3, so utime (14) and stime (15) are the 12th and 13th.
    let (_, after_name) = stat.rsplit_once(')').with_context(|| format!("{path}: no ')'"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> Result<f64> {
        let field = fields.get(index).with_context(|| format!("{path}: too few fields"))?;
        let ticks: u64 = field.parse().with_context(|| format!("{path}: bad time {field:?}"))?;
        Ok(ticks as f64)
    };
    Ok((ticks(11)? + ticks(12)?) / CLOCK_TICKS_PER_SEC)
}

/// The `HOST:PORT` in `sluice broker listening on PLAINTEXT://HOST:PORT (data dir D)`.
fn bootstrap_from(line: &str) -> Result<String> {
    let Some((_, rest)) = line.split_once("PLAINTEXT://") else {
        bail!("the broker's first line names no PLAINTEXT:// listener: {line:?}");
    };
    let end = rest.find([',', ' ', '\n']).unwrap_or(rest.len());
    let address = &rest[..end];
    if address.is_empty() {
        bail!("the broker's first line has an empty listener: {line:?}");
    }
    Ok(address.to_string())
}

/// A `kB` field of `/proc/<pid>/status`.
fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .with_context(|| format!("{path} has no {field} line"))?;
    let number = line[field.len()..].trim().trim_end_matches("kB").trim();
    number.parse().with_context(|| format!("{path}: cannot parse {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bootstrap_address_from_the_listening_line() {
        let line = "sluice broker listening on PLAINTEXT://127.0.0.1:40123 (data dir /d)\n";
        assert_eq!(bootstrap_from(line).unwrap(), "127.0.0.1:40123");
        let line = "sluice broker listening on PLAINTEXT://127.0.0.1:1,PLAINTEXT://h:2\n";
        assert_eq!(bootstrap_from(line).unwrap(), "127.0.0.1:1");
        assert!(bootstrap_from("something else\n").is_err());
    }

    #[test]
    fn reads_this_process_cpu_time() {
        let mut spin: u64 = 0;
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(50) {
            spin = spin.wrapping_add(1);
        }
        assert!(cpu_secs("self").unwrap() > 0.0, "after {spin} spins");
    }

    #[test]
    fn reads_this_process_rss() {
        let kib = status_kib(std::process::id(), "VmRSS:").unwrap();
        assert!(kib > 0, "VmRSS {kib} kB");
    }
}
