//! The broker's shared state: settings, metadata store, topics, groups, and the signals
//! that connect them (new data for long-polling fetches, shutdown).
use crate::config::Settings;
use crate::groups::Groups;
use crate::store::Store;
use crate::topics::Topics;

/// Everything a request handler can reach.
pub(crate) struct State {
    pub settings: Settings,
    pub store: std::sync::Arc<Store>,
    /// Broker and group configs changed at run time (`crate::dynamic_config`).
    pub dynamic: crate::dynamic_config::DynamicConfigs,
    pub topics: Topics,
    pub groups: Groups,
    /// Consumer-protocol groups (KIP-848).
    pub consumer_groups: crate::consumer_groups::ConsumerGroups,
    pub cluster_id: String,
    pub producer_ids: crate::handlers::ProducerIds,
    pub transactions: crate::transactions::Transactions,
    /// The host and port clients are told to use.
    pub advertised_host: String,
    pub advertised_port: i32,
    /// Woken whenever a partition's high watermark or last stable offset moves
    /// (long-polling fetches wait here, each for its own partitions).
    pub wakeups: std::sync::Arc<crate::wakeups::Wakeups>,
    /// Buffers Fetch answers copy their records through (`crate::buffer_pool`).
    pub copy_buffers: std::sync::Arc<crate::buffer_pool::BufferPool>,
    /// Buffers Produce request bodies are read into (`server::read_frame`).
    pub request_buffers: std::sync::Arc<crate::buffer_pool::BufferPool>,
    /// Set to true once, at shutdown.
    pub shutdown: tokio::sync::watch::Sender<bool>,
}
