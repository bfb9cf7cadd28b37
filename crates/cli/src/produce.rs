//! `sluice produce`: kafka-console-producer.sh. Each stdin line becomes one record, parsed
//! by [`LineReader`]; at end of input every record is flushed and any delivery failure
//! makes the command fail.
//!
//! Memory is bounded: one line of at most [`LINE_BYTES_MAX`] is buffered, and at most
//! [`SENDS_IN_FLIGHT_MAX`] delivery futures are held; past that, reading waits for acks.
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use indicatif::ProgressBar;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

use crate::client::{kafka_error, use_java_partitioner, ClientArgs};
use crate::limits::{
    DELIVERY_ERRORS_PRINTED_MAX, FLUSH_TIMEOUT_MS, LINE_BYTES_MAX, SENDS_IN_FLIGHT_MAX,
};
use crate::line_reader::{strip_terminator, LineReader, LineRecord};
use crate::progress;
use crate::properties::parse_pairs;

/// Compression codecs, named as Kafka's `compression.type` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressionCodec {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl CompressionCodec {
    /// The `compression.type` value.
    pub fn name(self) -> &'static str {
        match self {
            CompressionCodec::None => "none",
            CompressionCodec::Gzip => "gzip",
            CompressionCodec::Snappy => "snappy",
            CompressionCodec::Lz4 => "lz4",
            CompressionCodec::Zstd => "zstd",
        }
    }
}

/// Flags of `sluice produce`, as kafka-console-producer.sh names them.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The topic to produce to.
    #[arg(long, value_name = "TOPIC")]
    topic: String,
    /// Line parsing: parse.key, key.separator, parse.headers, headers.delimiter,
    /// headers.separator, headers.key.separator, ignore.error, null.marker (repeatable).
    #[arg(long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// A producer client property (repeatable), e.g. linger.ms=5.
    #[arg(long = "producer-property", value_name = "KEY=VALUE")]
    producer_properties: Vec<String>,
    /// Compression; the flag alone means gzip, as in Kafka.
    #[arg(
        long = "compression-codec",
        value_enum,
        num_args = 0..=1,
        default_missing_value = "gzip",
        value_name = "CODEC"
    )]
    compression_codec: Option<CompressionCodec>,
    /// Acknowledgements the leader waits for: all (-1), 1 or 0 [default: all].
    #[arg(long, alias = "request-required-acks", value_name = "ACKS")]
    acks: Option<String>,
}

/// Runs `sluice produce`.
pub async fn run(args: ProduceArgs) -> Result<()> {
    let reader = LineReader::from_properties(&parse_pairs(&args.properties)?)?;
    let overrides = parse_pairs(&args.producer_properties)?;
    let mut config = args.client.client_config("sluice-console-producer", &overrides)?;
    match &args.acks {
        Some(acks) => config.set("acks", acks),
        None if config.get("acks").is_none() => config.set("acks", "all"),
        None => &mut config,
    };
    if let Some(codec) = args.compression_codec {
        config.set("compression.type", codec.name());
    }
    use_java_partitioner(&mut config);
    let producer: FutureProducer =
        config.create().map_err(kafka_error).context("cannot create producer")?;
    let stdin_is_terminal = std::io::stdin().is_terminal();
    let prompt = stdin_is_terminal && std::io::stdout().is_terminal();
    let bar = progress::records(progress::wanted(stdin_is_terminal), "produced");
    let mut deliveries = Deliveries::new(&args.topic, bar.clone());
    let mut input = tokio::io::BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    let mut line_number = 0u64;
    loop {
        if prompt {
            print_prompt()?;
        }
        line.clear();
        let mut limited = (&mut input).take(LINE_BYTES_MAX + 1);
        let read = limited.read_until(b'\n', &mut line).await.context("cannot read stdin")?;
        if read == 0 {
            break;
        }
        line_number += 1;
        if line.len() as u64 > LINE_BYTES_MAX {
            bail!("line {line_number} is longer than {LINE_BYTES_MAX} bytes");
        }
        let record = read_record(&reader, strip_terminator(&line), line_number)?;
        deliveries.send(&producer, record).await;
        bar.set_position(line_number);
    }
    let result = deliveries.finish().await;
    bar.finish_and_clear();
    result
}

fn print_prompt() -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(b">").and_then(|()| stdout.flush()).context("cannot write stdout")
}

fn read_record(reader: &LineReader, line: &[u8], line_number: u64) -> Result<LineRecord> {
    if !reader.parses() {
        let value = Some(line.to_vec());
        return Ok(LineRecord { key: None, value, headers: Vec::new() });
    }
    let text = std::str::from_utf8(line)
        .with_context(|| format!("line {line_number} is not UTF-8, so it cannot be parsed"))?;
    reader.read(text, line_number)
}

/// Outstanding deliveries and the failures seen so far.
struct Deliveries {
    /// Shared so a record can borrow it while `self` waits for acks.
    topic: Arc<str>,
    in_flight: FuturesUnordered<DeliveryFuture>,
    bar: ProgressBar,
    sent_count: u64,
    failed_count: u64,
    first_error: Option<String>,
}

impl Deliveries {
    fn new(topic: &str, bar: ProgressBar) -> Deliveries {
        Deliveries {
            topic: Arc::from(topic),
            in_flight: FuturesUnordered::new(),
            bar,
            sent_count: 0,
            failed_count: 0,
            first_error: None,
        }
    }

    async fn send(&mut self, producer: &FutureProducer, record: LineRecord) {
        let topic = Arc::clone(&self.topic);
        let mut future_record = FutureRecord::<[u8], [u8]>::to(&topic);
        if let Some(key) = &record.key {
            future_record = future_record.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            future_record = future_record.payload(value.as_slice());
        }
        if !record.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (key, value) in &record.headers {
                headers = headers.insert(Header { key, value: value.as_deref() });
            }
            future_record = future_record.headers(headers);
        }
        self.sent_count += 1;
        loop {
            match producer.send_result(future_record) {
                Ok(delivery) => {
                    self.in_flight.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // librdkafka's queue is full: wait for an ack, then retry the record.
                    future_record = back;
                    self.wait_one().await;
                }
                Err((error, _)) => {
                    self.fail(kafka_error(error));
                    break;
                }
            }
        }
        while self.in_flight.len() >= SENDS_IN_FLIGHT_MAX {
            self.wait_one().await;
        }
        while let Some(Some(outcome)) = self.in_flight.next().now_or_never() {
            self.settle(outcome);
        }
    }

    async fn wait_one(&mut self) {
        match self.in_flight.next().await {
            Some(outcome) => self.settle(outcome),
            None => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }

    fn settle(&mut self, outcome: <DeliveryFuture as std::future::Future>::Output) {
        match outcome {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => self.fail(kafka_error(error)),
            Err(_) => self.fail(anyhow::anyhow!("the producer closed before the ack")),
        }
    }

    fn fail(&mut self, error: anyhow::Error) {
        self.failed_count += 1;
        let message = format!("{error:#}");
        if self.failed_count <= DELIVERY_ERRORS_PRINTED_MAX {
            let topic = &self.topic;
            let line = format!("error: cannot deliver a record to {topic}: {message}");
            self.bar.suspend(|| {
                let _ = writeln!(std::io::stderr(), "{line}");
            });
        }
        self.first_error.get_or_insert(message);
    }

    /// Waits for every outstanding ack, at most [`FLUSH_TIMEOUT_MS`].
    async fn finish(mut self) -> Result<()> {
        let deadline = Duration::from_millis(FLUSH_TIMEOUT_MS);
        let drained = tokio::time::timeout(deadline, async {
            while let Some(outcome) = self.in_flight.next().await {
                self.settle(outcome);
            }
        })
        .await;
        if drained.is_err() {
            bail!(
                "{} records to {} were still unacknowledged after {FLUSH_TIMEOUT_MS} ms",
                self.in_flight.len(),
                self.topic
            );
        }
        if let Some(first_error) = &self.first_error {
            bail!(
                "{} of {} records were not delivered to {}; first error: {first_error}",
                self.failed_count,
                self.sent_count,
                self.topic
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_raw_bytes_when_not_parsing() {
        let reader = LineReader::from_properties(&Default::default()).unwrap();
        let record = read_record(&reader, b"\xff\xfe", 1).unwrap();
        assert_eq!(record.value, Some(vec![0xff, 0xfe]));
    }

    #[test]
    fn requires_utf8_when_parsing() {
        let properties = [("parse.key".to_string(), "true".to_string())].into();
        let reader = LineReader::from_properties(&properties).unwrap();
        let error = read_record(&reader, b"\xff\tv", 4).unwrap_err();
        assert!(error.to_string().contains("line 4"), "{error}");
    }

    #[test]
    fn compression_flag_alone_means_gzip() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            produce: ProduceArgs,
        }
        let cli = Cli::try_parse_from(["p", "--topic", "t", "--compression-codec"]).unwrap();
        assert_eq!(cli.produce.compression_codec, Some(CompressionCodec::Gzip));
        let cli = Cli::try_parse_from(["p", "--topic", "t", "--compression-codec", "zstd"]);
        assert_eq!(cli.unwrap().produce.compression_codec, Some(CompressionCodec::Zstd));
    }
}
