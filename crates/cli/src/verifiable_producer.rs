//! `sluice verifiable-producer`: Kafka's `org.apache.kafka.tools.VerifiableProducer`, so
//! test harnesses written for it run unchanged.
//!
//! It sends the values `0, 1, 2, ...` (as `{value_prefix}.{n}` with `--value-prefix`) at
//! `--throughput` records per second (-1: unthrottled), prints one JSON event per ack or
//! failure, and on completion or SIGTERM/Ctrl-C prints `shutdown_complete` and `tool_data`.
//! It exits 0 only if every sent record was acknowledged.
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use serde::Serialize;

use crate::client::{kafka_error, use_java_partitioner, ClientArgs};
use crate::events::{self, NoFields};
use crate::limits::{FLUSH_TIMEOUT_MS, SENDS_IN_FLIGHT_MAX};
use crate::native;
use crate::properties::parse_pairs;
use crate::shutdown;

/// Flags of `sluice verifiable-producer`, as VerifiableProducer names them.
#[derive(Debug, clap::Args)]
pub struct VerifiableProducerArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The topic to produce to.
    #[arg(long, value_name = "TOPIC")]
    topic: String,
    /// Target records per second; -1 means unthrottled.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true, value_name = "N")]
    throughput: i64,
    /// Records to send; -1 means until stopped.
    #[arg(long = "max-messages", default_value_t = -1, allow_negative_numbers = true)]
    max_messages: i64,
    /// Acknowledgements: -1 (all), 0 or 1.
    #[arg(long, default_value = "-1", allow_negative_numbers = true, value_name = "ACKS")]
    acks: String,
    /// Values become `PREFIX.N` instead of `N`.
    #[arg(long = "value-prefix", value_name = "PREFIX")]
    value_prefix: Option<i64>,
    /// Keys cycle through `0..N` (as strings); without it keys are null.
    #[arg(long = "repeating-keys", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    repeating_keys: Option<u64>,
    /// Record timestamps start here (ms since the epoch) and advance with the clock.
    #[arg(long = "message-create-time", value_name = "MS")]
    message_create_time: Option<i64>,
    /// A producer client property (repeatable).
    #[arg(long = "producer-property", value_name = "KEY=VALUE")]
    producer_properties: Vec<String>,
}

/// `producer_send_success`.
#[derive(Debug, Serialize)]
pub struct SendSuccess<'a> {
    key: Option<&'a str>,
    value: &'a str,
    topic: &'a str,
    partition: i32,
    offset: i64,
}

/// `producer_send_error`. `exception` is the Kafka error name (`_MSG_TIMED_OUT`) where Java
/// prints an exception class.
#[derive(Debug, Serialize)]
pub struct SendError<'a> {
    key: Option<&'a str>,
    value: &'a str,
    topic: &'a str,
    exception: String,
    message: String,
}

/// `tool_data`, the run's totals.
#[derive(Debug, Serialize)]
pub struct ToolData {
    sent: u64,
    acked: u64,
    target_throughput: i64,
    avg_throughput: f64,
}

/// The value of the `index`-th record (0-based), as the Java tool formats it.
pub fn value(prefix: Option<i64>, index: u64) -> String {
    match prefix {
        Some(prefix) => format!("{prefix}.{index}"),
        None => index.to_string(),
    }
}

/// The key of the `index`-th record: `index mod repeating_keys`, or null.
pub fn key(repeating_keys: Option<u64>, index: u64) -> Option<String> {
    repeating_keys.map(|keys| (index % keys).to_string())
}

/// How long to wait before the next send so that `sent_count` records take at least
/// `sent_count / throughput` seconds. `None`: send now.
pub fn throttle_delay(sent_count: u64, elapsed: Duration, throughput: i64) -> Option<Duration> {
    if throughput <= 0 {
        return None;
    }
    let due = Duration::from_secs_f64(sent_count as f64 / throughput as f64);
    due.checked_sub(elapsed).filter(|delay| !delay.is_zero())
}

/// One delivery result with its record.
struct Ack {
    key: Option<String>,
    value: String,
    result: Result<(i32, i64), KafkaError>,
}

fn track(delivery: DeliveryFuture, key: Option<String>, value: String) -> AckFuture {
    Box::pin(delivery.map(move |outcome| {
        let result = match outcome {
            Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
            Ok(Err((error, _))) => Err(error),
            Err(_) => Err(KafkaError::Canceled),
        };
        Ack { key, value, result }
    }))
}

/// Runs `sluice verifiable-producer`.
pub async fn run(args: VerifiableProducerArgs) -> Result<()> {
    if args.throughput == 0 {
        bail!("--throughput 0 would never send; use -1 for unthrottled");
    }
    let overrides = parse_pairs(&args.producer_properties)?;
    let mut config = args.client.client_config("sluice-verifiable-producer", &overrides)?;
    config.set("acks", &args.acks);
    use_java_partitioner(&mut config);
    let producer: FutureProducer =
        config.create().map_err(kafka_error).context("cannot create producer")?;
    events::emit("startup_complete", NoFields {})?;
    let mut run = Run::new(&args);
    let stop = shutdown::signalled();
    tokio::pin!(stop);
    let started = Instant::now();
    while args.max_messages < 0 || run.sent < args.max_messages as u64 {
        if (&mut stop).now_or_never().is_some() {
            break;
        }
        run.send(&producer, started).await?;
        let delay = throttle_delay(run.sent, started.elapsed(), args.throughput);
        if let Some(delay) = delay {
            if run.wait(delay, &mut stop).await? {
                break;
            }
        }
    }
    run.drain().await?;
    let elapsed_ms = started.elapsed().as_millis().max(1) as f64;
    events::emit("shutdown_complete", NoFields {})?;
    let avg_throughput = 1000.0 * run.acked as f64 / elapsed_ms;
    let (sent, acked, target_throughput) = (run.sent, run.acked, args.throughput);
    events::emit("tool_data", ToolData { sent, acked, target_throughput, avg_throughput })?;
    if acked < sent {
        bail!("{} of {sent} records were not acknowledged", sent - acked);
    }
    Ok(())
}

/// A delivery in flight.
type AckFuture = Pin<Box<dyn Future<Output = Ack> + Send>>;

/// The sending state: counters and outstanding deliveries.
struct Run<'a> {
    args: &'a VerifiableProducerArgs,
    sent: u64,
    acked: u64,
    in_flight: FuturesUnordered<AckFuture>,
}

impl<'a> Run<'a> {
    fn new(args: &'a VerifiableProducerArgs) -> Run<'a> {
        Run { args, sent: 0, acked: 0, in_flight: FuturesUnordered::new() }
    }

    async fn send(&mut self, producer: &FutureProducer, started: Instant) -> Result<()> {
        let args = self.args;
        let index = self.sent;
        let key = key(args.repeating_keys, index);
        let value = value(args.value_prefix, index);
        let mut record = FutureRecord::<str, str>::to(&args.topic).payload(&value);
        if let Some(key) = &key {
            record = record.key(key.as_str());
        }
        if let Some(create_ms) = args.message_create_time {
            let elapsed_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
            record = record.timestamp(create_ms.saturating_add(elapsed_ms));
        }
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    self.in_flight.push(track(delivery, key.clone(), value.clone()));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.wait_one().await?;
                }
                Err((error, _)) => {
                    let ack = Ack { key: key.clone(), value: value.clone(), result: Err(error) };
                    self.report(ack)?;
                    break;
                }
            }
        }
        self.sent += 1;
        while self.in_flight.len() >= SENDS_IN_FLIGHT_MAX {
            self.wait_one().await?;
        }
        while let Some(Some(ack)) = self.in_flight.next().now_or_never() {
            self.report(ack)?;
        }
        Ok(())
    }

    /// Sleeps `delay` while reporting acks; returns true if a stop signal arrived.
    async fn wait(
        &mut self,
        delay: Duration,
        stop: &mut (impl Future<Output = Result<&'static str>> + Unpin),
    ) -> Result<bool> {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return Ok(false),
                _ = &mut *stop => return Ok(true),
                Some(ack) = self.in_flight.next() => self.report(ack)?,
            }
        }
    }

    async fn wait_one(&mut self) -> Result<()> {
        match self.in_flight.next().await {
            Some(ack) => self.report(ack),
            None => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(())
            }
        }
    }

    /// Waits for every outstanding ack, at most [`FLUSH_TIMEOUT_MS`]; unacked records
    /// then count as not acknowledged.
    async fn drain(&mut self) -> Result<()> {
        let deadline = tokio::time::sleep(Duration::from_millis(FLUSH_TIMEOUT_MS));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return Ok(()),
                next = self.in_flight.next() => match next {
                    Some(ack) => self.report(ack)?,
                    None => return Ok(()),
                },
            }
        }
    }

    fn report(&mut self, ack: Ack) -> Result<()> {
        let topic = self.args.topic.as_str();
        let (key, value) = (ack.key.as_deref(), ack.value.as_str());
        match ack.result {
            Ok((partition, offset)) => {
                self.acked += 1;
                let body = SendSuccess { key, value, topic, partition, offset };
                events::emit("producer_send_success", body)
            }
            Err(error) => {
                let exception = match error.rdkafka_error_code() {
                    Some(code) => native::error_name(code),
                    None => "KafkaException".to_string(),
                };
                let message = format!("{:#}", kafka_error(error));
                let body = SendError { key, value, topic, exception, message };
                events::emit("producer_send_error", body)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::to_line;

    #[test]
    fn formats_values_and_keys_like_java() {
        assert_eq!(value(None, 7), "7");
        assert_eq!(value(Some(3), 7), "3.7");
        assert_eq!(key(None, 7), None);
        assert_eq!(key(Some(3), 7).as_deref(), Some("1"));
    }

    #[test]
    fn paces_sends_to_the_target_throughput() {
        assert_eq!(throttle_delay(10, Duration::ZERO, -1), None);
        assert_eq!(
            throttle_delay(10, Duration::from_millis(50), 100),
            Some(Duration::from_millis(50))
        );
        assert_eq!(throttle_delay(10, Duration::from_millis(200), 100), None);
    }

    #[test]
    fn prints_success_events_like_java() {
        let body = SendSuccess { key: None, value: "0", topic: "t", partition: 0, offset: 5 };
        assert_eq!(
            to_line(1, "producer_send_success", body),
            concat!(
                r#"{"timestamp":1,"name":"producer_send_success","key":null,"value":"0","#,
                r#""topic":"t","partition":0,"offset":5}"#,
            )
        );
        let keyed =
            SendSuccess { key: Some("2"), value: "1.4", topic: "t", partition: 1, offset: 0 };
        assert!(to_line(1, "producer_send_success", keyed).contains(r#""key":"2","value":"1.4""#));
    }

    #[test]
    fn prints_error_and_tool_data_events_like_java() {
        let error = SendError {
            key: None,
            value: "3",
            topic: "t",
            exception: "_MSG_TIMED_OUT".into(),
            message: "timed out".into(),
        };
        assert_eq!(
            to_line(1, "producer_send_error", error),
            concat!(
                r#"{"timestamp":1,"name":"producer_send_error","key":null,"value":"3","#,
                r#""topic":"t","exception":"_MSG_TIMED_OUT","message":"timed out"}"#,
            )
        );
        let data = ToolData { sent: 10, acked: 10, target_throughput: -1, avg_throughput: 2.5 };
        assert_eq!(
            to_line(1, "tool_data", data),
            concat!(
                r#"{"timestamp":1,"name":"tool_data","sent":10,"acked":10,"#,
                r#""target_throughput":-1,"avg_throughput":2.5}"#,
            )
        );
    }
}
