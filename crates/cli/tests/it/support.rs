//! Shared helpers for the integration tests: a broker per test, rdkafka clients pointed at it,
//! and bounded waits.
//!
//! Every helper that waits takes or applies a limit, so a broker that does not answer fails the
//! test within seconds instead of hanging the suite. Clients are configured for a single local
//! broker: IPv4 only, short backoffs, and no group unless a test needs one.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice_testkit::BrokerProcess;

/// The `sluice` binary Cargo built for this test binary.
pub const SLUICE_BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// How long one admin or metadata request may take against a local broker.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the real broker on a fresh temporary data folder.
pub fn start_broker() -> BrokerProcess {
    BrokerProcess::start(Path::new(SLUICE_BIN))
        .unwrap_or_else(|error| panic!("the sluice broker must start: {error}"))
}

/// Awaits `future` for at most `limit`, panicking with `what` and the broker log otherwise.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    broker: &BrokerProcess,
    future: impl Future<Output = T>,
) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} took longer than {limit:?}; broker log:\n{}", broker.log_tail()),
    }
}

/// Client settings every test client shares.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        // The broker binds 127.0.0.1 only; never try ::1 first.
        .set("broker.address.family", "v4")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .set("retry.backoff.ms", "20")
        .set("retry.backoff.max.ms", "200")
        .set("socket.timeout.ms", "10000");
    config
}

/// An admin client for `bootstrap`.
pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    client_config(bootstrap).create().expect("admin client config is valid")
}

/// Admin options with a bounded request time.
pub fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(REQUEST_TIMEOUT))
        .operation_timeout(Some(REQUEST_TIMEOUT))
}

/// Creates `name` with `partitions` partitions, replication factor 1 and `configs`; panics
/// with the broker log if the broker refuses.
pub async fn create_topic(
    broker: &BrokerProcess,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    let admin = admin(&broker.bootstrap());
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let results = within(REQUEST_TIMEOUT * 2, "CreateTopics", broker, async {
        admin.create_topics([&topic], &admin_options()).await
    })
    .await
    .unwrap_or_else(|error| panic!("CreateTopics {name}: {error}; log:\n{}", broker.log_tail()));
    assert_eq!(results.len(), 1, "one result per topic: {results:?}");
    if let Err((topic, code)) = &results[0] {
        panic!("creating {topic} failed with {code:?}; broker log:\n{}", broker.log_tail());
    }
}

/// A producer with acks=all and the given extra settings.
pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut config = client_config(bootstrap);
    config.set("acks", "all").set("message.timeout.ms", "30000");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config.create().expect("producer config is valid")
}

/// A consumer for `assign()`-based reads: it never joins or commits to its group (librdkafka
/// only refuses `assign()` without a `group.id`). It verifies batch CRCs so a corrupt or torn
/// batch surfaces as an error instead of silently wrong data.
pub fn assign_consumer(bootstrap: &str) -> StreamConsumer {
    let mut config = client_config(bootstrap);
    config
        .set("group.id", "sluice-it-assign-reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("check.crcs", "true")
        .set("fetch.wait.max.ms", "100");
    config.create().expect("consumer config is valid")
}

/// One consumed record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// The record's partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// The record key, if any.
    pub key: Option<Vec<u8>>,
    /// The record value, if any.
    pub value: Option<Vec<u8>>,
}

/// Reads every record of `topic`'s `partitions` from the beginning up to each partition's
/// current high watermark, with a fresh assign()-based consumer. Records come back grouped
/// by partition, in the order the broker served them. Any consumer error fails the test: with
/// `check.crcs` that includes a corrupt or torn batch.
pub async fn read_all(
    broker: &BrokerProcess,
    topic: &str,
    partitions: i32,
    limit: Duration,
) -> BTreeMap<i32, Vec<ConsumedRecord>> {
    let consumer = assign_consumer(&broker.bootstrap());
    let mut high_watermarks = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        let (low, high) =
            consumer.fetch_watermarks(topic, partition, REQUEST_TIMEOUT).unwrap_or_else(|error| {
                panic!("watermarks of {topic}/{partition}: {error}; log:\n{}", broker.log_tail())
            });
        assert_eq!(low, 0, "nothing deletes records here, so {topic}/{partition} starts at 0");
        high_watermarks.insert(partition, high);
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("a valid partition offset");
    }
    consumer.assign(&assignment).expect("assign() takes any partition list");
    let mut records: BTreeMap<i32, Vec<ConsumedRecord>> =
        (0..partitions).map(|partition| (partition, Vec::new())).collect();
    let done = |records: &BTreeMap<i32, Vec<ConsumedRecord>>| {
        high_watermarks.iter().all(|(partition, high)| {
            records[partition].last().map_or(*high == 0, |record| record.offset + 1 >= *high)
        })
    };
    let deadline = Instant::now() + limit;
    while !done(&records) {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(message)) => message,
            Ok(Err(error)) => panic!("consuming {topic}: {error}; log:\n{}", broker.log_tail()),
            Err(_) => panic!(
                "reading {topic} up to the high watermarks {high_watermarks:?} took over \
                 {limit:?}; got {:?} records per partition; log:\n{}",
                records.values().map(Vec::len).collect::<Vec<_>>(),
                broker.log_tail()
            ),
        };
        records.entry(message.partition()).or_default().push(ConsumedRecord {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
        });
    }
    records
}

/// Retries `attempt` every 100 ms until it returns `Some` or `limit` passes.
pub async fn eventually<T>(limit: Duration, mut attempt: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = attempt() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every value of `topic` as a fresh assign()-based consumer with `isolation.level =
/// isolation` sees it, read until its position reaches each partition's high watermark (read
/// at the start; transaction markers take offsets but are never delivered, so counting
/// records cannot tell) or 30 s pass. Returns the values and whether the end was reached.
pub async fn read_isolated(
    broker: &BrokerProcess,
    topic: &str,
    partitions: i32,
    isolation: &str,
) -> (Vec<String>, bool) {
    let mut config = client_config(&broker.bootstrap());
    config
        .set("group.id", "sluice-it-isolated-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("fetch.wait.max.ms", "50");
    let consumer: StreamConsumer = config.create().expect("consumer config is valid");
    let mut assignment = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for partition in 0..partitions {
        let (_, high) =
            consumer.fetch_watermarks(topic, partition, REQUEST_TIMEOUT).expect("watermarks");
        ends.insert(partition, high);
        assignment.add_partition_offset(topic, partition, Offset::Beginning).expect("valid");
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut found = Vec::new();
    loop {
        let position = consumer.position().expect("position");
        let done = ends.iter().all(|(partition, high)| {
            *high == 0
                || matches!(
                    position.find_partition(topic, *partition).map(|p| p.offset()),
                    Some(Offset::Offset(at)) if at >= *high
                )
        });
        if done || Instant::now() >= deadline {
            return (found, done);
        }
        match tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await {
            Ok(Ok(message)) => found
                .push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned()),
            Ok(Err(error)) => panic!("consuming {topic}: {error}; log:\n{}", broker.log_tail()),
            Err(_) => {}
        }
    }
}

fn log_file(dir: &Path) -> std::process::Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("sluice-up.log"))
        .map_or_else(|_| std::process::Stdio::null(), std::process::Stdio::from)
}

/// A running `sluice up` and the addresses it printed.
pub struct Up {
    child: std::process::Child,
    /// The broker's HOST:PORT.
    pub bootstrap: String,
    /// The AWS-compatible API's URL, when delivery streams run.
    pub aws_api: Option<String>,
}

impl Up {
    /// Runs `sluice up solution.toml --data-dir data` in `dir` and waits until it is up.
    pub fn start(dir: &Path) -> Up {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new(SLUICE_BIN)
            .args(["up", "solution.toml", "--data-dir", "data"])
            .current_dir(dir)
            .stdout(std::process::Stdio::piped())
            // Appended, so a test's failure message can point at every run's log.
            .stderr(log_file(dir))
            .spawn()
            .expect("sluice up starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (mut bootstrap, mut aws_api) = (String::new(), None);
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("sluice up prints lines");
            if let Some(address) = line.trim().strip_prefix("broker     PLAINTEXT://") {
                bootstrap = address.to_string();
            }
            if let Some(url) = line.trim().strip_prefix("aws api    http://") {
                aws_api = Some(format!("http://{url}"));
            }
            if line.starts_with("Press Ctrl-C") {
                break;
            }
        }
        assert!(!bootstrap.is_empty(), "sluice up printed its broker address");
        Up { child, bootstrap, aws_api }
    }

    /// SIGKILL, and wait for the process to go.
    pub fn kill9(mut self) {
        self.kill_now();
    }

    fn kill_now(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: sending a signal to our own child process by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().expect("sluice up exits")
    }
}

impl Drop for Up {
    /// A test that fails before stopping its `sluice up` must not leave it running.
    fn drop(&mut self) {
        self.kill_now();
    }
}
