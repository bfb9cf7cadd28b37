//! The segment log: one folder per partition, segment files of record batches, a sparse
//! offset index and a time index per segment, retention, and recovery after a crash.
//!
//! Invariants (checked in debug builds, and on open against the disk):
//! - Batches in a partition are contiguous: each batch's base offset is the previous
//!   batch's last offset + 1, and segment `n + 1` starts where segment `n` ends.
//! - Every byte below a segment's recorded size is a whole, CRC-valid batch.
//! - `log_start_offset <= high_watermark <= log_end_offset`.
//!
//! The byte layout and the recovery procedure are in `docs/design/log.md`.
#![deny(missing_docs)]

mod config;
mod error;
mod index;
pub mod limits;
mod partition;
mod producer_state;
mod segment;
mod shared;

pub use config::{FlushPolicy, LogConfig, TimestampType};
pub use error::{Error, Result};
pub use partition::{AppendInfo, LogSlice, PartitionLog};
pub use producer_state::{AbortedTxn, BatchMetadata, Check, OpenTxn, ProducerStates};
pub use segment::Wait;
pub use shared::{Partition, SyncedHook};
