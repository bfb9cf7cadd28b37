//! `sluice bench loopback`: TCP bandwidth over 127.0.0.1 between two threads of this
//! process, one connection, 1 MiB writes: the most a consumer on this machine could read
//! from a local broker if the broker and the client did no work at all.
//!
//! Each run stops after `LOOPBACK_BYTES_MAX` or `LOOPBACK_SECS_MAX`, whichever comes first.
//! The clock runs from the first write until the reader has seen end of stream, so bytes
//! still in socket buffers are not counted as delivered. `LOOPBACK_REPEATS` runs, on a new
//! connection each; the best is the limit.
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use super::disk::pattern;
use super::limits::{
    LOOPBACK_BYTES_MAX, LOOPBACK_REPEATS, LOOPBACK_SECS_MAX, LOOPBACK_WRITE_BYTES, MIB,
};
use super::Progress;

/// Result of the loopback runs: the best run's figures, and every run's bandwidth.
#[derive(Debug, Clone, Serialize)]
pub struct LoopbackResult {
    /// Bytes the reader received.
    pub bytes: u64,
    /// Bytes per write.
    pub write_bytes: u64,
    /// Wall time, seconds.
    pub secs: f64,
    /// Bandwidth.
    pub mib_per_s: f64,
    /// Every run's bandwidth, in order.
    pub runs_mib_per_s: Vec<f64>,
}

/// Runs the loopback measurement `LOOPBACK_REPEATS` times; the best run is the result.
pub fn run(progress: &Progress) -> Result<LoopbackResult> {
    let mut best: Option<LoopbackResult> = None;
    let mut runs = Vec::with_capacity(LOOPBACK_REPEATS);
    for _ in 0..LOOPBACK_REPEATS {
        let result = run_once(progress)?;
        runs.push(result.mib_per_s);
        if best.as_ref().is_none_or(|best| result.mib_per_s > best.mib_per_s) {
            best = Some(result);
        }
    }
    let best = best.ok_or_else(|| anyhow!("no loopback run"))?;
    Ok(LoopbackResult { runs_mib_per_s: runs, ..best })
}

/// One loopback run.
fn run_once(progress: &Progress) -> Result<LoopbackResult> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot listen on 127.0.0.1")?;
    let addr = listener.local_addr().context("cannot read the listening address")?;
    let reader = std::thread::spawn(move || -> Result<u64> {
        let (stream, _) = listener.accept().context("cannot accept the loopback connection")?;
        drain(stream)
    });
    let bar = progress.bytes("loopback: 1 MiB writes", LOOPBACK_BYTES_MAX);
    let mut stream = TcpStream::connect(addr).with_context(|| format!("cannot connect {addr}"))?;
    let chunk = pattern(LOOPBACK_WRITE_BYTES);
    let started = Instant::now();
    let deadline = Duration::from_secs(LOOPBACK_SECS_MAX);
    let mut written: u64 = 0;
    while written < LOOPBACK_BYTES_MAX && started.elapsed() < deadline {
        stream.write_all(&chunk).context("cannot write the loopback connection")?;
        written += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
    }
    stream.shutdown(Shutdown::Write).context("cannot close the loopback connection")?;
    let received = reader.join().map_err(|_| anyhow!("the loopback reader panicked"))??;
    let secs = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    assert_eq!(received, written, "the reader must see every byte written");
    Ok(LoopbackResult {
        bytes: received,
        write_bytes: LOOPBACK_WRITE_BYTES as u64,
        secs,
        mib_per_s: received as f64 / MIB as f64 / secs,
        runs_mib_per_s: Vec::new(),
    })
}

/// Reads until end of stream; returns the byte count.
fn drain(mut stream: TcpStream) -> Result<u64> {
    let mut buffer = vec![0; LOOPBACK_WRITE_BYTES];
    let mut received: u64 = 0;
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Ok(received),
            Ok(read) => received += read as u64,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error).context("cannot read the loopback connection"),
        }
    }
}
