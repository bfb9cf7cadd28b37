//! The rebalance run: how long a consumer group of two takes to settle with a third member,
//! measured from the third member's subscribe to the moment every member owns its share of
//! the partitions (librdkafka runs the assignment in `poll`, so each member polls on its own
//! thread). Run with librdkafka's default group settings, and again with a 100 ms heartbeat
//! interval to show how much of the time is the clients' heartbeat interval: existing
//! members learn of a rebalance only from a heartbeat response, in Kafka as here.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use serde::Serialize;

use super::limits::{ADMIN_TIMEOUT_SECS, REBALANCE_PARTITIONS, REBALANCE_TRIALS};

/// Result of the rebalance runs.
#[derive(Debug, Clone, Serialize)]
pub struct RebalanceRun {
    /// librdkafka's `heartbeat.interval.ms` for this run (its default is 3000).
    pub heartbeat_interval_ms: u64,
    /// Seconds from the third member's subscribe to an even assignment, per trial.
    pub settle_secs: Vec<f64>,
    /// The median of `settle_secs`.
    pub median_secs: f64,
}

/// Runs `REBALANCE_TRIALS` joins of a third member into a group of two on `topic`.
pub fn run(
    bootstrap: &str,
    topic: &str,
    heartbeat_interval_ms: Option<u64>,
) -> Result<RebalanceRun> {
    let mut settle_secs = Vec::with_capacity(REBALANCE_TRIALS);
    for trial in 0..REBALANCE_TRIALS {
        let group = format!(
            "sluice-bench-rebalance-{}-{trial}-{}",
            heartbeat_interval_ms.unwrap_or(0),
            std::process::id()
        );
        settle_secs.push(one_join(bootstrap, topic, &group, heartbeat_interval_ms)?);
    }
    let mut sorted = settle_secs.clone();
    sorted.sort_by(f64::total_cmp);
    let median_secs = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
    Ok(RebalanceRun {
        heartbeat_interval_ms: heartbeat_interval_ms.unwrap_or(3000),
        settle_secs,
        median_secs,
    })
}

fn member(
    bootstrap: &str,
    group: &str,
    heartbeat_interval_ms: Option<u64>,
) -> Result<BaseConsumer> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap).set("group.id", group);
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

/// Forms a group of two, then times the third member's join.
fn one_join(bootstrap: &str, topic: &str, group: &str, heartbeat: Option<u64>) -> Result<f64> {
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
