//! Every wait and buffer in testkit has a limit, each with its reason.

use std::time::Duration;

/// How long [`crate::BrokerProcess`] waits for the broker's listening line: a debug build
/// recovering a large log on a loaded 2-core machine still starts well within this.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`crate::BrokerProcess::stop`] waits after SIGTERM before it gives up and kills:
/// a clean shutdown only finishes in-flight requests and syncs the log.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a stopping broker is polled for its exit status; short enough not to slow tests.
pub const STOP_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The longest listening line read from the broker's stdout; the real one is under 200 bytes,
/// so anything longer is a broken broker, not a line to buffer.
pub const LISTENING_LINE_BYTES_MAX: u64 = 4096;

/// How much of `broker.log` [`crate::BrokerProcess::log_tail`] returns: the whole log of a
/// short test, without reading a runaway log into memory.
pub const LOG_TAIL_BYTES_MAX: u64 = 256 * 1024;

/// How many log lines a startup or stop error quotes: enough for a panic message and its
/// context, short enough to read in a test failure.
pub const ERROR_LOG_LINES_MAX: usize = 40;

/// How long [`crate::raw::RawConn::connect`] waits for TCP connect on loopback.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest response frame [`crate::raw::RawConn::read_frame`] accepts: bigger than any
/// response a test provokes, and it keeps a corrupt size prefix from allocating gigabytes.
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;
