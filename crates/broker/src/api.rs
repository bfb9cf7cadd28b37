//! The running broker: start, listeners, topic creation for solution files, shutdown.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_log::FlushPolicy;
use tokio::task::JoinHandle;

use crate::buffer_pool::BufferPool;
use crate::dynamic_config::DynamicConfigs;
use crate::groups::{GroupSettings, Groups, TICK_MS};
use crate::limits::{
    FETCH_COPY_BUFFERS, FETCH_COPY_BUFFER_BYTES, REQUEST_BUFFERS, REQUEST_BUFFER_BYTES,
};
use crate::state::State;
use crate::store::Store;
use crate::topics::Topics;
use crate::transactions::{Transactions, TxnSettings};
use crate::wakeups::Wakeups;
use crate::{server, BrokerConfig, Error, Result};

/// A running broker.
pub struct Broker {
    state: Arc<State>,
    local_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Broker {
    /// Validates the config, opens the data folder (recovering every log), binds the
    /// listener and starts serving.
    pub async fn start(config: BrokerConfig) -> Result<Broker> {
        let settings = config.validate()?;
        std::fs::create_dir_all(&settings.data_dir).map_err(|e| {
            Error::Unavailable(format!("create data dir {}: {e}", settings.data_dir.display()))
        })?;
        let store = Arc::new(Store::open(&settings.data_dir.join("meta.redb"))?);
        let cluster_id = store.cluster_id()?;
        let wakeups = Arc::new(Wakeups::new());
        let (dynamic, defaults) = DynamicConfigs::load(&store, &settings)?;
        let topics = Topics::open(&settings, defaults, &store, wakeups.synced_hook())?;
        let bind = format!("{}:{}", settings.listener.host, settings.listener.port);
        let listener = tokio::net::TcpListener::bind(&bind)
            .await
            .map_err(|e| Error::Unavailable(format!("cannot listen on {bind}: {e}; pick another port with --listeners PLAINTEXT://HOST:PORT")))?;
        let local_addr = listener.local_addr().map_err(|e| Error::Unavailable(e.to_string()))?;
        let advertised_host = settings
            .listener
            .advertised_host
            .clone()
            .unwrap_or_else(|| advertise(&settings.listener.host, local_addr));
        let advertised_port =
            i32::from(settings.listener.advertised_port.unwrap_or(local_addr.port()));
        let groups = Groups::load(
            GroupSettings {
                initial_rebalance_delay: Duration::from_millis(
                    settings.group_initial_rebalance_delay_ms,
                ),
                session_timeout_min_ms: settings.group_min_session_timeout_ms,
                session_timeout_max_ms: settings.group_max_session_timeout_ms,
                heartbeat_hold_max: Duration::from_millis(settings.group_heartbeat_hold_max_ms),
            },
            Arc::clone(&store),
        )?;
        let transactions = Transactions::load(
            &store,
            TxnSettings {
                max_timeout_ms: settings.transaction_max_timeout_ms,
                id_expiration_ms: settings.transactional_id_expiration_ms,
            },
        )?;
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let state = Arc::new(State {
            settings,
            store,
            dynamic,
            topics,
            groups,
            consumer_groups: Default::default(),
            cluster_id,
            producer_ids: Default::default(),
            transactions,
            advertised_host,
            advertised_port,
            wakeups,
            copy_buffers: Arc::new(BufferPool::new(FETCH_COPY_BUFFERS, FETCH_COPY_BUFFER_BYTES)),
            request_buffers: Arc::new(BufferPool::new(REQUEST_BUFFERS, REQUEST_BUFFER_BYTES)),
            shutdown,
        });
        let recovering = Arc::clone(&state);
        tokio::task::spawn_blocking(move || recovering.transactions.recover(&recovering))
            .await
            .map_err(|e| Error::Unavailable(format!("transaction recovery stopped: {e}")))??;
        let tasks = vec![
            tokio::spawn(server::accept_loop(Arc::clone(&state), listener)),
            tokio::spawn(ticker(Arc::clone(&state))),
            tokio::spawn(retention(Arc::clone(&state))),
            tokio::spawn(flusher(Arc::clone(&state))),
            tokio::spawn(transaction_upkeep(Arc::clone(&state))),
            tokio::spawn(offsets_retention(Arc::clone(&state))),
        ];
        tracing::info!(listen = %local_addr, data_dir = %state.settings.data_dir.display(), cluster_id = %state.cluster_id, "broker started");
        Ok(Broker { state, local_addr, tasks })
    }

    /// Where the broker listens, as `PLAINTEXT://host:port` (the advertised form).
    pub fn listeners(&self) -> Vec<String> {
        vec![format!("PLAINTEXT://{}:{}", self.state.advertised_host, self.state.advertised_port)]
    }

    /// The bound socket addresses (port 0 in the config is resolved here).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        vec![self.local_addr]
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> &str {
        &self.state.cluster_id
    }

    /// Creates a topic unless it exists; `configs` use Kafka's topic config names.
    /// Returns `Ok(false)` when the topic already existed.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<bool> {
        match self.state.topics.create(
            &self.state.settings,
            &self.state.store,
            name,
            partitions,
            -1,
            configs,
        ) {
            Ok(_) => Ok(true),
            Err(Error::TopicExists(_)) => Ok(false),
            Err(error) => Err(error),
        }
    }

    #[cfg(test)]
    pub(crate) fn state_for_tests(&self) -> Arc<State> {
        Arc::clone(&self.state)
    }

    /// Stops about as a crash would, for tests: the tasks end, and shutdown's work (storing
    /// waiting completions, closing the logs) is skipped. Dropping the state afterwards
    /// still closes the store, which makes its unsynced commits durable, as a SIGKILL
    /// would not.
    #[cfg(test)]
    pub(crate) async fn crash_for_tests(self) {
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }

    /// Stops accepting, ends connections between requests, syncs every log.
    pub async fn shutdown(self) -> Result<()> {
        // send_replace stores the value even before any task has subscribed (send would not).
        self.state.shutdown.send_replace(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let mut first_error = None;
        let closing = Arc::clone(&self.state);
        if let Err(error) = tokio::task::spawn_blocking(move || closing.groups.close()).await {
            tracing::error!(%error, "storing group states at shutdown stopped");
        }
        let saving = Arc::clone(&self.state);
        let saved = tokio::task::spawn_blocking(move || {
            saving.transactions.save_completions(&saving, true)
        })
        .await
        .map_err(|e| Error::Unavailable(format!("storing transactions stopped: {e}")));
        if let Err(error) = saved.and_then(|saved| saved) {
            tracing::error!(%error, "storing completed transactions at shutdown failed");
            first_error.get_or_insert(error);
        }
        for topic in self.state.topics.all() {
            for partition in &topic.partitions {
                if let Err(error) = partition.with_log(|log| log.close()) {
                    tracing::error!(topic = %topic.name, %error, "sync at shutdown failed");
                    first_error.get_or_insert(Error::Log(error));
                }
            }
        }
        tracing::info!("broker stopped");
        first_error.map_or(Ok(()), Err)
    }
}

/// The host to advertise: the configured one, unless it is a wildcard or a name that may
/// resolve to IPv6 first (librdkafka may try `::1` for `localhost`), then an IPv4 literal.
fn advertise(host: &str, bound: SocketAddr) -> String {
    match host {
        "" | "0.0.0.0" | "::" | "localhost" => {
            if bound.ip().is_unspecified() || host == "localhost" {
                "127.0.0.1".to_string()
            } else {
                bound.ip().to_string()
            }
        }
        other => other.to_string(),
    }
}

async fn until_shutdown(state: &State, period: Duration, mut work: impl FnMut()) {
    let mut shutdown = state.shutdown.subscribe();
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => work(),
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// Expires group sessions and completes rebalances.
async fn ticker(state: Arc<State>) {
    let groups_state = Arc::clone(&state);
    until_shutdown(&state, Duration::from_millis(TICK_MS), move || {
        groups_state.groups.tick();
        groups_state.consumer_groups.tick(std::time::Instant::now());
    })
    .await;
}

/// Runs `work` on the blocking pool every `period` (the first time at once) until shutdown:
/// for upkeep that syncs files or the store, which must stay off the async workers.
async fn every_until_shutdown(
    state: Arc<State>,
    period: Duration,
    work: impl Fn(&State) + Send + Sync + 'static,
) {
    let work = Arc::new(work);
    let mut shutdown = state.shutdown.subscribe();
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = interval.tick() => false,
            _ = shutdown.wait_for(|stop| *stop) => true,
        };
        if stopping {
            return;
        }
        let (state, work) = (Arc::clone(&state), Arc::clone(&work));
        let _ = tokio::task::spawn_blocking(move || work(&state)).await;
    }
}

/// Completes transactions left half-done (at once, so a restart finishes what a crash cut
/// short) and aborts timed-out ones, every
/// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
async fn transaction_upkeep(state: Arc<State>) {
    let period = Duration::from_millis(state.settings.transaction_cleanup_interval_ms);
    every_until_shutdown(state, period, |state| state.transactions.tick(state)).await;
}

/// Expires committed offsets every `offsets.retention.check.interval.ms`.
async fn offsets_retention(state: Arc<State>) {
    let period = Duration::from_millis(state.settings.offsets_retention_check_interval_ms);
    every_until_shutdown(state, period, |state| {
        let retention_ms = state.settings.offsets_retention_ms;
        let live = |group: &str| state.consumer_groups.has_members(group);
        let now = crate::clock::now_ms();
        if let Err(error) = state.groups.expire_offsets(retention_ms, now, live) {
            tracing::warn!(%error, "offset retention pass failed");
        }
    })
    .await;
}

/// Applies retention every `log.retention.check.interval.ms`.
async fn retention(state: Arc<State>) {
    let period = Duration::from_millis(state.settings.retention_check_interval_ms);
    // Deleting segment files waits on the disk: on the blocking pool.
    every_until_shutdown(state, period, |inner| {
        let now = crate::clock::now_ms();
        for topic in inner.topics.all() {
            for partition in &topic.partitions {
                match partition.with_log(|log| log.apply_retention(now)) {
                    Ok(0) => {}
                    Ok(deleted) => {
                        // Long polls below the new log start answer OFFSET_OUT_OF_RANGE now.
                        inner.wakeups.wake(partition);
                        tracing::info!(topic = %topic.name, deleted, "retention deleted segments")
                    }
                    Err(error) => tracing::warn!(topic = %topic.name, %error, "retention failed"),
                }
            }
        }
    })
    .await;
}

/// Syncs every partition on `log.flush = interval`.
async fn flusher(state: Arc<State>) {
    let FlushPolicy::Interval { interval_ms } = state.settings.log_defaults.flush else { return };
    let period = Duration::from_millis(interval_ms);
    // Each sync waits on the disk: on the blocking pool.
    every_until_shutdown(state, period, |inner| {
        for topic in inner.topics.all() {
            for partition in &topic.partitions {
                let end = partition.with_log(|log| log.log_end_offset());
                if let Err(error) = partition.sync_to(end) {
                    tracing::error!(topic = %topic.name, %error, "interval flush failed");
                }
            }
        }
    })
    .await;
}
