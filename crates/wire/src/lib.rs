//! Kafka wire protocol for sluice: framing, request headers, version negotiation, and the
//! record batch (magic v2) header codec. No I/O happens here: callers hand in bytes.
//!
//! Message bodies are decoded and encoded by the `kafka-protocol` crate; this crate adds what
//! a broker needs around it: the limits, the supported version table, the KIP-511 fallback
//! answer to an unsupported ApiVersions request, and a batch validator that never panics on
//! input.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

pub mod alloc;
pub mod batch;
mod error;
pub mod frame;
pub mod fuzzing;
pub mod limits;
mod records;
pub mod request;
pub mod response;
pub mod versions;

pub use error::{BatchError, Error};
pub use kafka_protocol;
