//! The sluice broker: Kafka requests served on the segment log.
//!
//! The public surface is small: build a [`BrokerConfig`] from Kafka-named properties,
//! [`Broker::start`] it, read [`Broker::listeners`], create topics declared in a solution
//! file with [`Broker::create_topic`], and [`Broker::shutdown`] on a signal.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

mod api;
mod buffer_pool;
mod clock;
mod config;
mod consumer_groups;
mod dynamic_config;
mod error;
mod group_writer;
mod groups;
mod handlers;
pub mod limits;
mod server;
mod state;
mod store;
mod topic_config;
mod topics;
mod transactions;
mod wakeups;

pub use api::Broker;
pub use config::{BrokerConfig, Settings, BROKER_PROPERTIES};
pub use error::{Error, Result};
