//! Consumer functions (pattern 2 of the seed): user code invoked with batches of Kafka
//! records in the exact event Lambda sends for an MSK or self-managed Kafka event source
//! mapping, at least once, with Lambda's batching, retry, bisection, partial-failure and
//! on-failure-destination semantics.
//!
//! A function reaches Kafka only over the Kafka protocol (rdkafka), so the same
//! `[[function]]` runs against sluice's broker, Apache Kafka or Amazon MSK, and scales out
//! through its consumer group: start it on several machines and the partitions are shared.
//!
//! - [`config`]: the `[[function]]` settings, named as the event source mapping's;
//! - [`event`]: the event JSON; [`filter`]: FilterCriteria;
//! - [`poller`]: consuming, batching, committing;
//! - [`invoke`]: the retry policy for one batch;
//! - [`handler`]: builtin and command handlers ([`deliver`]: the Firehose forwarder); [`runtime_api`]: the Lambda Runtime API;
//! - [`log`]: the function's log (CloudWatch-like), [`metrics`]: its counters.
#![deny(missing_docs)]

pub mod config;
pub mod deliver;
pub mod error;
pub mod event;
pub mod filter;
pub mod handler;
pub mod invoke;
pub mod limits;
pub mod log;
pub mod metrics;
pub mod poller;
pub mod runtime_api;

pub use config::{Function, FunctionConfig};
pub use error::{Error, Result};
pub use poller::{run, Options};
