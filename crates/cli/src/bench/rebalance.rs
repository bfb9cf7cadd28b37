//! The rebalance run: how long a consumer group of two takes to settle with a third member,
//! measured from the third member's subscribe to the moment every member owns its share of
//! the partitions (librdkafka runs the assignment in `poll`, so each member polls on its own
//! thread). Existing members learn of a rebalance only from a heartbeat response; Kafka
//! answers heartbeats at once, so there a join waits for the others' next heartbeat, up to
//! `heartbeat.interval.ms`. The sluice coordinator holds heartbeats and answers them when
//! the rebalance begins (`group.heartbeat.hold.max.ms`), except while no heartbeat is in
//! flight: after another request on the coordinator connection (an offset commit or fetch)
//! released it, until the client's next heartbeat is due. The third member joins either
//! right after the two settled (when the others' first heartbeats have just been released by
//! their offset fetches), or at a random moment of the steady state, so every phase of the
//! others' heartbeats and commits is sampled. Last, the same random joins with KIP-848's
//! consumer protocol (`group.protocol=consumer`: the coordinator assigns, and times the
//! heartbeats, 5 s apart by default; no heartbeat is held).
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use rand::Rng;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use serde::Serialize;

use super::limits::{
    ADMIN_TIMEOUT_SECS, REBALANCE_PARTITIONS, REBALANCE_TRIALS_RANDOM, REBALANCE_TRIALS_SETTLED,
};
use super::process::BrokerProcess;
use super::Progress;

/// The topic of the rebalance runs.
const TOPIC: &str = "sluice-bench-rebalance";

/// Everything `sluice bench groups` measures, each with librdkafka's default settings.
#[derive(Debug, Clone, Serialize)]
pub struct GroupsResult {
    /// Held heartbeats (the default): the third member joins as soon as two settled.
    pub settled: RebalanceRun,
    /// Held heartbeats: the third member joins at a random moment (the target).
    pub random: RebalanceRun,
    /// `group.heartbeat.hold.max.ms=0`, heartbeats answered at once as Kafka does: the third
    /// member joins at a random moment.
    pub without_holds: RebalanceRun,
    /// KIP-848's consumer protocol (`group.protocol=consumer`): the third member joins at a
    /// random moment.
    pub consumer_protocol: RebalanceRun,
}

/// Which group protocol the members speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Protocol {
    /// JoinGroup and SyncGroup (librdkafka's default).
    Classic,
    /// ConsumerGroupHeartbeat (KIP-848).
    Consumer,
}

/// Runs every rebalance measurement, on a broker with the default settings and then on one
/// that answers heartbeats at once. A producer writes `TRICKLE_RECORDS_PER_SEC` records a
/// second meanwhile, so the members consume and auto-commit (every 5 s by default) as a
/// working group does: each commit ends a held heartbeat early.
pub fn run_all(dir: &std::path::Path, progress: &Progress) -> Result<GroupsResult> {
    let bar = progress.count("groups: a third member joins", 0);
    let broker = BrokerProcess::start_with(&dir.join("holds"), &[])?;
    super::load::create_topic_named(&broker.bootstrap, TOPIC, REBALANCE_PARTITIONS)?;
    let trickle = Trickle::start(&broker.bootstrap)?;
    let classic = Protocol::Classic;
    let settled =
        run(&broker.bootstrap, TOPIC, classic, None, Join::Settled, REBALANCE_TRIALS_SETTLED)?;
    let random =
        run(&broker.bootstrap, TOPIC, classic, None, Join::Random, REBALANCE_TRIALS_RANDOM)?;
    let consumer = Protocol::Consumer;
    let consumer_protocol =
        run(&broker.bootstrap, TOPIC, consumer, None, Join::Random, REBALANCE_TRIALS_RANDOM)?;
    trickle.stop()?;
    drop(broker);
    let broker =
        BrokerProcess::start_with(&dir.join("no-holds"), &["group.heartbeat.hold.max.ms=0"])?;
    super::load::create_topic_named(&broker.bootstrap, TOPIC, REBALANCE_PARTITIONS)?;
    let trickle = Trickle::start(&broker.bootstrap)?;
    let without_holds =
        run(&broker.bootstrap, TOPIC, classic, None, Join::Random, REBALANCE_TRIALS_RANDOM)?;
    trickle.stop()?;
    bar.finish_and_clear();
    Ok(GroupsResult { settled, random, without_holds, consumer_protocol })
}

/// Records a second the trickle producer writes during the group runs.
const TRICKLE_RECORDS_PER_SEC: u64 = 100;

/// A producer thread writing a few records a second to `TOPIC` until stopped.
struct Trickle {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<()>>,
}

impl Trickle {
    fn start(bootstrap: &str) -> Result<Trickle> {
        let producer: rdkafka::producer::BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "0")
            .create()
            .map_err(|e| anyhow!("cannot create the trickle producer: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let pause = Duration::from_micros(1_000_000 / TRICKLE_RECORDS_PER_SEC);
            let mut sequence = 0u64;
            while !stopping.load(Ordering::Relaxed) {
                let payload = sequence.to_string();
                let record = rdkafka::producer::BaseRecord::<(), _>::to(TOPIC).payload(&payload);
                if let Err((error, _)) = producer.send(record) {
                    return Err(anyhow!("the trickle producer failed: {error}"));
                }
                sequence += 1;
                producer.poll(pause);
            }
            rdkafka::producer::Producer::flush(&producer, Duration::from_secs(ADMIN_TIMEOUT_SECS))
                .map_err(|e| anyhow!("the trickle producer did not flush: {e}"))
        });
        Ok(Trickle { stop, thread })
    }

    fn stop(self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().map_err(|_| anyhow!("the trickle producer panicked"))?
    }
}

/// When the third member joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Join {
    /// As soon as the group of two has settled.
    Settled,
    /// At a random moment of the steady state: after two heartbeat intervals (the members'
    /// first heartbeats and offset fetches are over), then up to two more.
    Random,
}

/// Result of the rebalance runs.
#[derive(Debug, Clone, Serialize)]
pub struct RebalanceRun {
    /// The group protocol the members spoke.
    pub protocol: Protocol,
    /// librdkafka's `heartbeat.interval.ms` for this run (its default is 3000).
    pub heartbeat_interval_ms: u64,
    /// When the third member joined.
    pub join: Join,
    /// Seconds from the third member's subscribe to an even assignment, per trial.
    pub settle_secs: Vec<f64>,
    /// The median of `settle_secs`.
    pub median_secs: f64,
    /// The slowest of `settle_secs`.
    pub max_secs: f64,
}

/// Runs `trials` joins of a third member into a group of two on `topic`.
pub fn run(
    bootstrap: &str,
    topic: &str,
    protocol: Protocol,
    heartbeat_interval_ms: Option<u64>,
    join: Join,
    trials: usize,
) -> Result<RebalanceRun> {
    let interval_ms = heartbeat_interval_ms.unwrap_or(3000);
    let mut settle_secs = Vec::with_capacity(trials);
    let mut rng = rand::thread_rng();
    for trial in 0..trials {
        let group = format!(
            "sluice-bench-rebalance-{protocol:?}-{}-{join:?}-{trial}-{}",
            heartbeat_interval_ms.unwrap_or(0),
            std::process::id()
        );
        let delay = match join {
            Join::Settled => Duration::ZERO,
            Join::Random => {
                Duration::from_millis(2 * interval_ms + rng.gen_range(0..=2 * interval_ms))
            }
        };
        let members = (protocol, heartbeat_interval_ms);
        settle_secs.push(one_join(bootstrap, topic, &group, members, delay)?);
    }
    let mut sorted = settle_secs.clone();
    sorted.sort_by(f64::total_cmp);
    let median_secs = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
    let max_secs = sorted.last().copied().unwrap_or(f64::NAN);
    Ok(RebalanceRun {
        protocol,
        heartbeat_interval_ms: interval_ms,
        join,
        settle_secs,
        median_secs,
        max_secs,
    })
}

fn member(
    bootstrap: &str,
    group: &str,
    (protocol, heartbeat_interval_ms): (Protocol, Option<u64>),
) -> Result<BaseConsumer> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap).set("group.id", group);
    if protocol == Protocol::Consumer {
        config.set("group.protocol", "consumer");
    }
    if let Some(ms) = heartbeat_interval_ms {
        config.set("heartbeat.interval.ms", ms.to_string());
    }
    config.create().map_err(|e| anyhow!("cannot create a consumer: {e}"))
}

/// Polls `consumer` until `stop`, so librdkafka can run its rebalances.
fn poll_until(consumer: &BaseConsumer, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let _ = consumer.poll(Duration::from_millis(10));
    }
}

fn even(consumers: &[&BaseConsumer]) -> bool {
    let share = REBALANCE_PARTITIONS as usize / consumers.len();
    let counts: Vec<usize> =
        consumers.iter().map(|c| c.assignment().map_or(0, |a| a.count())).collect();
    counts.iter().all(|c| *c == share)
        && counts.iter().sum::<usize>() == REBALANCE_PARTITIONS as usize
}

/// Forms a group of two, waits `delay`, then times the third member's join.
fn one_join(
    bootstrap: &str,
    topic: &str,
    group: &str,
    heartbeat: (Protocol, Option<u64>),
    delay: Duration,
) -> Result<f64> {
    let first = member(bootstrap, group, heartbeat)?;
    let second = member(bootstrap, group, heartbeat)?;
    let third = member(bootstrap, group, heartbeat)?;
    let limit = Duration::from_secs(ADMIN_TIMEOUT_SECS * 2);
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|scope| {
        for consumer in [&first, &second] {
            consumer.subscribe(&[topic]).map_err(|e| anyhow!("subscribe: {e}"))?;
            let stop = Arc::clone(&stop);
            scope.spawn(move || poll_until(consumer, &stop));
        }
        let deadline = Instant::now() + limit;
        while !even(&[&first, &second]) {
            if Instant::now() > deadline {
                stop.store(true, Ordering::Relaxed);
                bail!("a group of two did not settle within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(delay);
        let joined = Instant::now();
        third.subscribe(&[topic]).map_err(|e| anyhow!("subscribe: {e}"))?;
        {
            let stop = Arc::clone(&stop);
            let third = &third;
            scope.spawn(move || poll_until(third, &stop));
        }
        while !even(&[&first, &second, &third]) {
            if joined.elapsed() > limit {
                stop.store(true, Ordering::Relaxed);
                bail!("the third member's join did not settle within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let secs = joined.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        Ok(secs)
    })
}
