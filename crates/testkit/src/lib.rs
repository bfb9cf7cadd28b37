//! Dev-only helpers for testing sluice against the real thing.
//!
//! - [`BrokerProcess`] runs the real `sluice broker` binary on port 0 with a temporary data
//!   folder, and can stop it (SIGTERM), kill it (SIGKILL) and restart it on the same data folder.
//!   Its stderr goes to `broker.log` in its scratch folder, so a failing test can print
//!   [`BrokerProcess::log_tail`].
//! - [`raw`] is a tiny blocking Kafka client that writes exactly the bytes a test asks for:
//!   bogus frame sizes, truncated requests, unknown API keys, corrupt record batches. Real clients
//!   (rdkafka) refuse to send such bytes, so bad-input tests need it.
//! - [`SmallDisk`] mounts a small `tmpfs` (as root) so a data folder really runs out of space.
//!
//! Every wait has a limit ([`limits`]) so a broken broker fails a test fast instead of hanging it.
//! Errors are plain [`std::io::Error`]s whose messages carry the broker log tail where it helps:
//! tests only ever `expect()` them, so a richer error enum would buy nothing here.
#![deny(missing_docs)]

mod broker_process;
pub mod limits;
pub mod raw;
mod small_disk;

pub use broker_process::BrokerProcess;
pub use small_disk::SmallDisk;
