//! Delivery streams (pattern 3 of the seed): records buffered by size and time, compressed,
//! and published as objects exactly once, with Amazon Data Firehose's settings, keys,
//! formats and API.
//!
//! A stream reaches Kafka only over the Kafka protocol (rdkafka) and objects only through
//! `object_store`, so the same `[[delivery_stream]]` runs against sluice's broker, Apache
//! Kafka or Amazon MSK, and publishes to a folder, S3 or any S3-compatible store.
//!
//! - [`config`]: the `[[delivery_stream]]` settings, named as Firehose's;
//! - [`stream`]: consuming, rounds, publishing, committing (the exactly-once argument);
//! - [`object`]: one object being built and its key; [`template`]: prefixes and key names;
//! - [`compression`]: GZIP, ZIP, Snappy, HADOOP_SNAPPY; [`conversion`]: JSON to Parquet;
//! - [`query`]: dynamic partitioning's metadata extraction query;
//! - [`destination`]: object stores by URL; [`api`]: the Firehose API;
//! - [`metrics`]: Firehose's metric names.
#![deny(missing_docs)]

#[cfg(feature = "kafka")]
pub mod api;
pub mod compression;
pub mod config;
pub mod conversion;
pub mod destination;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod object;
pub mod query;
#[cfg(feature = "kafka")]
pub mod stream;
pub mod template;

pub use config::{DeliveryStream, DeliveryStreamConfig};
pub use error::{Error, Result};
#[cfg(feature = "kafka")]
pub use stream::{run, Options};
