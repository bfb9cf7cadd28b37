//! Broker-only runs: a Kafka client that costs almost nothing, so the broker's own ceiling
//! shows.
//!
//! The librdkafka runs measure a client and the broker together, and on a 2-core machine the
//! client takes about one core for 400 MiB/s of 1 KiB records (the CPU column of the report).
//! These runs take the client out of the way:
//!
//! - **produce**: each connection sends one Produce request over and over (acks=all, one batch
//!   of [`WIRE_BATCH_RECORDS`] records per partition), encoded once before the clock starts;
//!   only its correlation id changes. Up to [`WIRE_IN_FLIGHT`] requests are in flight per
//!   connection (the Java client's `max.in.flight.requests.per.connection`). The latency is
//!   per request, from the write to its response: a record waits for the response of the
//!   request that carried it.
//! - **transactional produce**: each connection is a transactional producer of its own
//!   (InitProducerId with a transactional id), and runs one transaction at a time as a
//!   Kafka client does: AddPartitionsToTxn for one partition, one Produce of one batch of
//!   [`TRANSACTION_RECORDS`] records (its sequence numbers and CRC set per transaction),
//!   awaited, then EndTxn (commit), awaited. Each transaction goes to the next partition, as
//!   a sticky partitioner moves on. The latency is per transaction, from the AddPartitionsToTxn
//!   write to the EndTxn response. This shows what a transaction costs the broker without
//!   librdkafka's own costs (its 1 ms timer before AddPartitionsToTxn, its CPU).
//! - **consume**: one connection sends one Fetch at a time (as a consumer does) with Kafka's
//!   default sizes, and walks each response batch by batch without decoding records.
//!
//! The records are the same as the librdkafka runs' (no key, `--record-bytes` payload), and
//! the broker does the same work for them: it validates every batch's CRC, appends, syncs
//! before it acknowledges, and serves fetches from its segment files.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use indicatif::ProgressBar;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, BrokerId, EndTxnRequest, EndTxnResponse,
    FetchRequest, FetchResponse, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest,
    ProduceResponse, ProducerId, RequestHeader, ResponseHeader, TopicName, TransactionalId,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use serde::Serialize;
use sluice_wire::batch::{self, BatchSpec, KeyValue};

use crate::events::now_ms;

use super::disk::pattern;
use super::limits::{
    ADMIN_TIMEOUT_SECS, MIB, TRANSACTION_RECORDS, WIRE_BATCH_RECORDS, WIRE_FETCH_WAIT_MS,
    WIRE_IN_FLIGHT, WIRE_RESPONSE_BYTES_MAX, WIRE_WAITING_FETCH_WAIT_MS,
};
use super::process::{CpuMeter, CpuUse};
use super::produce;
use super::stats::{Histogram, LatencyMs};

/// Produce v9: the first flexible version; every client sluice is tested with speaks it.
const PRODUCE_VERSION: i16 = 9;
/// InitProducerId v3, AddPartitionsToTxn v3 and EndTxn v3: flexible, and what librdkafka
/// sends to sluice (AddPartitionsToTxn v4+ is the brokers' batched form).
const INIT_PRODUCER_ID_VERSION: i16 = 3;
const ADD_PARTITIONS_VERSION: i16 = 3;
const END_TXN_VERSION: i16 = 3;
/// `transaction.timeout.ms` of the wire transactional producers (Kafka's default).
const TRANSACTION_TIMEOUT_MS: i32 = 60_000;
/// Fetch v12: flexible, topics by name.
const FETCH_VERSION: i16 = 12;
/// Kafka's default `fetch.max.bytes` and `max.partition.fetch.bytes`.
const FETCH_MAX_BYTES: i32 = 52_428_800;
const PARTITION_FETCH_BYTES: i32 = 1_048_576;

/// Where the runs send, and what.
pub struct Target<'a> {
    /// `HOST:PORT` of the broker.
    pub bootstrap: &'a str,
    /// The benchmark topic.
    pub topic: &'a str,
    /// Its partitions: every request writes or reads all of them.
    pub partitions: i32,
    /// Payload bytes per record.
    pub record_bytes: usize,
    /// The broker's process id, to measure its CPU use.
    pub broker_pid: u32,
}

/// Result of one wire produce run.
#[derive(Debug, Clone, Serialize)]
pub struct WireProduceRun {
    /// Connections sending in parallel.
    pub connections: usize,
    /// Requests in flight per connection at most.
    pub in_flight: usize,
    /// Records per batch (one batch per partition per request).
    pub batch_records: usize,
    /// Records acknowledged.
    pub records: u64,
    /// Records of the untimed first request of each connection, also in the topic.
    pub warm_up_records: u64,
    /// Payload bytes acknowledged.
    pub bytes: u64,
    /// The request rate asked for, all connections together; `None` for a closed loop.
    pub target_requests_per_s: Option<f64>,
    /// Wall time from the first write to the last response, seconds.
    pub secs: f64,
    /// Payload bandwidth.
    pub mib_per_s: f64,
    /// Record rate.
    pub records_per_s: f64,
    /// Per-request latency, write to response.
    pub latency_ms: LatencyMs,
    /// CPU used by the broker and by this client.
    pub cpu: CpuUse,
}

/// Result of one wire consume run.
#[derive(Debug, Clone, Serialize)]
pub struct WireConsumeRun {
    /// Records read.
    pub records: u64,
    /// Payload bytes read (records times `--record-bytes`).
    pub bytes: u64,
    /// Bytes of record batches read, framing included.
    pub batch_bytes: u64,
    /// Fetch requests sent.
    pub fetches: u64,
    /// Wall time from the first fetch to the end, seconds.
    pub secs: f64,
    /// Payload bandwidth.
    pub mib_per_s: f64,
    /// Bandwidth of record batches, framing included.
    pub batch_mib_per_s: f64,
    /// CPU used by the broker and by this client.
    pub cpu: CpuUse,
}

/// Sends at least `records` records over `connections` connections, at `rate` requests per
/// second in all if given, and waits for every response.
pub fn produce(
    target: &Target<'_>,
    connections: usize,
    records: u64,
    rate: Option<f64>,
    bar: &ProgressBar,
) -> Result<WireProduceRun> {
    assert!(connections > 0, "a run needs a connection");
    let partitions = usize::try_from(target.partitions).unwrap_or(0).max(1);
    let per_request = (WIRE_BATCH_RECORDS * partitions) as u64;
    let requests = records.div_ceil(per_request).max(connections as u64);
    let frame = produce_frame(target)?;
    let mut streams: Vec<TcpStream> =
        (0..connections).map(|_| connect(target.bootstrap)).collect::<Result<_>>()?;
    // One request first on each connection: connection set-up and the first appends of each
    // partition are not timed.
    for stream in &mut streams {
        stream.write_all(&frame).context("cannot send a warm-up Produce")?;
        read_produce_response(stream, &mut Frames::default())?;
    }
    let rate_each = rate.map(|rate| rate / connections as f64);
    let timed = run_timed(target, streams, requests, |stream, count| {
        let on_response = |_: ()| bar.inc(per_request * target.record_bytes as u64);
        produce_on(stream, &frame, count, rate_each, on_response)
    })?;
    Ok(timed.into_run(target, (WIRE_IN_FLIGHT, WIRE_BATCH_RECORDS), per_request, rate))
}

/// Sends at least `records` records over `connections` transactional producers, in
/// transactions of [`TRANSACTION_RECORDS`] records, each committed before the next begins.
pub fn produce_transactional(
    target: &Target<'_>,
    connections: usize,
    records: u64,
    bar: &ProgressBar,
) -> Result<WireProduceRun> {
    assert!(connections > 0, "a run needs a connection");
    let per_txn = TRANSACTION_RECORDS;
    let transactions = records.div_ceil(per_txn).max(connections as u64);
    let payload = pattern(target.record_bytes);
    let mut producers: Vec<TxnProducer> =
        (0..connections).map(|index| TxnProducer::start(target, index)).collect::<Result<_>>()?;
    // One transaction first on each connection: connection set-up, the producer's first
    // batch of each kind and the transactional id's first decision are not timed.
    for producer in &mut producers {
        producer.transaction(target, &payload)?;
    }
    let timed = run_timed(target, producers, transactions, |mut producer, count| {
        let mut histogram = Histogram::default();
        for _ in 0..count {
            let at = Instant::now();
            producer.transaction(target, &payload)?;
            histogram.record(at.elapsed().as_micros() as u64);
            bar.inc(per_txn * target.record_bytes as u64);
        }
        Ok(histogram)
    })?;
    Ok(timed.into_run(target, (1, per_txn as usize), per_txn, None))
}

/// What one transaction of [`produce_transactional`] puts in its partition's log: its batch
/// of [`TRANSACTION_RECORDS`] records, then its commit marker (for `disk::transactions`).
pub fn transaction_on_disk(record_bytes: usize) -> (Vec<u8>, Vec<u8>) {
    let payload = pattern(record_bytes);
    let values: Vec<KeyValue<'_>> =
        (0..TRANSACTION_RECORDS).map(|_| (None, Some(payload.as_slice()))).collect();
    let spec = BatchSpec {
        timestamp_ms: now_ms(),
        attributes: batch::ATTR_TRANSACTIONAL,
        producer_id: 1,
        ..BatchSpec::default()
    };
    let marker = batch::build_marker(1, 0, batch::ControlType::Commit, 0, now_ms());
    (batch::build_batch(&spec, &values), marker)
}

/// What [`run_timed`] measured.
struct Timed {
    /// Workers that ran in parallel.
    workers: usize,
    /// Units of work done (requests or transactions), all of them acknowledged.
    units: u64,
    /// Latency per unit.
    histogram: Histogram,
    secs: f64,
    cpu: CpuUse,
}

impl Timed {
    /// The run's result: `shape` is the requests in flight per connection and the records
    /// per batch, `per_unit` the records of each unit of work; each worker also sent one
    /// untimed unit first.
    fn into_run(
        self,
        target: &Target<'_>,
        shape: (usize, usize),
        per_unit: u64,
        rate: Option<f64>,
    ) -> WireProduceRun {
        let records = self.units * per_unit;
        let bytes = records * target.record_bytes as u64;
        WireProduceRun {
            connections: self.workers,
            in_flight: shape.0,
            batch_records: shape.1,
            records,
            warm_up_records: per_unit * self.workers as u64,
            bytes,
            target_requests_per_s: rate,
            secs: self.secs,
            mib_per_s: bytes as f64 / MIB as f64 / self.secs,
            records_per_s: records as f64 / self.secs,
            latency_ms: self.histogram.summary(),
            cpu: self.cpu,
        }
    }
}

/// Splits `units` units of work over one thread per worker and runs `work(worker, count)` on
/// each, timing the whole and the broker's CPU; merges the latencies the workers return.
fn run_timed<W: Send>(
    target: &Target<'_>,
    workers: Vec<W>,
    units: u64,
    work: impl Fn(W, u64) -> Result<Histogram> + Sync,
) -> Result<Timed> {
    let count = workers.len() as u64;
    let share = |index: u64| units / count + u64::from(index < units % count);
    let meter = CpuMeter::start(target.broker_pid)?;
    let started = Instant::now();
    let outcomes: Vec<Result<Histogram>> = std::thread::scope(|scope| {
        let work = &work;
        let threads: Vec<_> = workers
            .into_iter()
            .zip(0u64..)
            .map(|(worker, index)| scope.spawn(move || work(worker, share(index))))
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|_| Err(anyhow!("a wire producer panicked"))))
            .collect()
    });
    let secs = started.elapsed().as_secs_f64();
    let cpu = meter.stop()?;
    let mut histogram = Histogram::default();
    for outcome in outcomes {
        histogram.merge(&outcome?);
    }
    Ok(Timed { workers: count as usize, units, histogram, secs, cpu })
}

/// One transactional producer on a connection of its own.
struct TxnProducer {
    stream: TcpStream,
    frames: Frames,
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    /// The next sequence number of each partition.
    sequences: Vec<i32>,
    /// The partition of the next transaction.
    partition: i32,
    correlation_id: i32,
}

impl TxnProducer {
    /// Connects and takes a producer id for a transactional id unique to this run.
    fn start(target: &Target<'_>, index: usize) -> Result<TxnProducer> {
        let mut stream = connect(target.bootstrap)?;
        let mut frames = Frames::default();
        let transactional_id = format!("sluice-bench-wire-{}-{index}", produce::uuid_like());
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_string(
                transactional_id.clone(),
            ))))
            .with_transaction_timeout_ms(TRANSACTION_TIMEOUT_MS)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        stream
            .write_all(&encode_frame(&request, INIT_PRODUCER_ID_VERSION, 0)?)
            .context("cannot send InitProducerId")?;
        let response: InitProducerIdResponse =
            read_response(&mut stream, &mut frames, INIT_PRODUCER_ID_VERSION)?;
        if response.error_code != 0 {
            bail!("InitProducerId failed with error code {}", response.error_code);
        }
        Ok(TxnProducer {
            stream,
            frames,
            transactional_id,
            producer_id: response.producer_id.0,
            producer_epoch: response.producer_epoch,
            sequences: vec![0; usize::try_from(target.partitions).unwrap_or(0).max(1)],
            partition: i32::try_from(index).unwrap_or(0) % target.partitions.max(1),
            correlation_id: 1,
        })
    }

    /// One committed transaction of `TRANSACTION_RECORDS` records to the next partition.
    fn transaction(&mut self, target: &Target<'_>, payload: &[u8]) -> Result<()> {
        let partition = self.partition;
        self.partition = (partition + 1) % target.partitions.max(1);
        let topic = TopicName(StrBytes::from_string(target.topic.to_string()));
        let id = TransactionalId(StrBytes::from_string(self.transactional_id.clone()));
        let add = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(id.clone())
            .with_v3_and_below_producer_id(ProducerId(self.producer_id))
            .with_v3_and_below_producer_epoch(self.producer_epoch)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(topic.clone())
                .with_partitions(vec![partition])]);
        let added: AddPartitionsToTxnResponse = self.round_trip(&add, ADD_PARTITIONS_VERSION)?;
        let refused = added
            .results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| &t.results_by_partition)
            .find(|p| p.partition_error_code != 0);
        if added.error_code != 0 || refused.is_some() {
            bail!("AddPartitionsToTxn failed: {added:?}");
        }
        let slot = usize::try_from(partition).ok().and_then(|i| self.sequences.get_mut(i));
        let Some(sequence) = slot else { bail!("partition {partition} out of range") };
        let values: Vec<KeyValue<'_>> =
            (0..TRANSACTION_RECORDS).map(|_| (None, Some(payload))).collect();
        let spec = BatchSpec {
            timestamp_ms: now_ms(),
            attributes: batch::ATTR_TRANSACTIONAL,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: *sequence,
            ..BatchSpec::default()
        };
        *sequence = sequence.wrapping_add(TRANSACTION_RECORDS as i32);
        let produce = ProduceRequest::default()
            .with_transactional_id(Some(id.clone()))
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic)
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(Bytes::from(batch::build_batch(&spec, &values))))])]);
        let frame = encode_frame(&produce, PRODUCE_VERSION, self.next_correlation_id())?;
        self.stream.write_all(&frame).context("cannot send a Produce request")?;
        read_produce_response(&mut self.stream, &mut self.frames)?;
        let end = EndTxnRequest::default()
            .with_transactional_id(id)
            .with_producer_id(ProducerId(self.producer_id))
            .with_producer_epoch(self.producer_epoch)
            .with_committed(true);
        let ended: EndTxnResponse = self.round_trip(&end, END_TXN_VERSION)?;
        if ended.error_code != 0 {
            bail!("EndTxn failed with error code {}", ended.error_code);
        }
        Ok(())
    }

    fn next_correlation_id(&mut self) -> i32 {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        self.correlation_id
    }

    /// Sends one request and reads its response.
    fn round_trip<R, T>(&mut self, request: &R, version: i16) -> Result<T>
    where
        R: Request + Encodable,
        T: Decodable + HeaderVersion,
    {
        let frame = encode_frame(request, version, self.next_correlation_id())?;
        self.stream.write_all(&frame).context("cannot send a request")?;
        read_response(&mut self.stream, &mut self.frames, version)
    }
}

/// One connection's closed (or paced) loop: a writer thread keeps up to `WIRE_IN_FLIGHT`
/// requests outstanding, this thread reads the responses in order.
fn produce_on(
    stream: TcpStream,
    frame: &[u8],
    requests: u64,
    rate: Option<f64>,
    on_response: impl Fn(()),
) -> Result<Histogram> {
    let mut writer = stream.try_clone().context("cannot clone the socket")?;
    let mut reader = stream;
    // The channel holds the write time of each request in flight; its bound is the
    // in-flight limit, so the writer blocks when it is reached.
    let (sent, in_flight) = sync_channel::<Instant>(WIRE_IN_FLIGHT.saturating_sub(1));
    let mut histogram = Histogram::default();
    std::thread::scope(|scope| -> Result<()> {
        let write = scope.spawn(move || -> Result<()> {
            let mut frame = frame.to_vec();
            let start = Instant::now();
            for n in 0..requests {
                if let Some(rate) = rate {
                    let due = start + Duration::from_secs_f64(n as f64 / rate);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                set_correlation_id(&mut frame, n as i32);
                if sent.send(Instant::now()).is_err() {
                    break; // the reader stopped on an error: it reports it
                }
                writer.write_all(&frame).context("cannot send a Produce request")?;
            }
            Ok(())
        });
        let mut frames = Frames::default();
        for _ in 0..requests {
            let Ok(at) = in_flight.recv() else { break };
            read_produce_response(&mut reader, &mut frames)?;
            histogram.record(at.elapsed().as_micros() as u64);
            on_response(());
        }
        drop(in_flight);
        write.join().unwrap_or_else(|_| Err(anyhow!("a wire writer panicked")))
    })?;
    Ok(histogram)
}

/// Reads every record of the topic from offset 0 to the high watermarks seen in the first
/// response, one Fetch at a time.
pub fn consume(target: &Target<'_>, bar: &ProgressBar) -> Result<WireConsumeRun> {
    let mut stream = connect(target.bootstrap)?;
    let mut offsets: Vec<i64> = vec![0; usize::try_from(target.partitions).unwrap_or(0)];
    let mut ends: Option<Vec<i64>> = None;
    let (mut records, mut batch_bytes, mut fetches) = (0u64, 0u64, 0u64);
    let mut frames = Frames::default();
    let meter = CpuMeter::start(target.broker_pid)?;
    let started = Instant::now();
    loop {
        if let Some(ends) = &ends {
            if offsets.iter().zip(ends).all(|(offset, end)| offset >= end) {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(ADMIN_TIMEOUT_SECS * 60) {
            bail!("the wire consumer did not reach the end in {} min", ADMIN_TIMEOUT_SECS);
        }
        let request = fetch_frame(target, &offsets, fetches as i32)?;
        stream.write_all(&request).context("cannot send a Fetch request")?;
        fetches += 1;
        let response: FetchResponse = read_response(&mut stream, &mut frames, FETCH_VERSION)?;
        if response.error_code != 0 {
            bail!("Fetch failed with error code {}", response.error_code);
        }
        let mut seen_ends = vec![0i64; offsets.len()];
        for topic in &response.responses {
            for partition in &topic.partitions {
                let index = usize::try_from(partition.partition_index)
                    .ok()
                    .filter(|i| *i < offsets.len())
                    .ok_or_else(|| anyhow!("Fetch answered unknown partition"))?;
                if partition.error_code != 0 {
                    bail!("Fetch of partition {index} failed: code {}", partition.error_code);
                }
                seen_ends[index] = partition.high_watermark;
                let Some(bytes) = &partition.records else { continue };
                let mut at = 0usize;
                while let Some(rest) = bytes.get(at..).filter(|r| !r.is_empty()) {
                    let Ok(header) = batch::parse_header(rest) else { break };
                    if header.total_bytes > rest.len() {
                        break; // a partial batch at the end of a response
                    }
                    // Transaction markers are not records a consumer sees.
                    if !header.is_control() {
                        records += u64::try_from(header.records_count).unwrap_or(0);
                    }
                    batch_bytes += header.total_bytes as u64;
                    offsets[index] = header.next_offset();
                    at += header.total_bytes;
                }
            }
        }
        if ends.is_none() {
            ends = Some(seen_ends);
        }
        bar.set_position(records * target.record_bytes as u64);
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = meter.stop()?;
    let bytes = records * target.record_bytes as u64;
    Ok(WireConsumeRun {
        records,
        bytes,
        batch_bytes,
        fetches,
        secs,
        mib_per_s: bytes as f64 / MIB as f64 / secs,
        batch_mib_per_s: batch_bytes as f64 / MIB as f64 / secs,
        cpu,
    })
}

/// Long-polling fetches left waiting: one connection each, each with one Fetch of one
/// partition of a topic nothing writes, waiting up to [`WIRE_WAITING_FETCH_WAIT_MS`] for a
/// byte, as idle consumers keep theirs. Dropped, the connections close.
pub struct WaitingFetches {
    streams: Vec<TcpStream>,
}

impl WaitingFetches {
    /// Opens `count` connections and sends each one's Fetch, spread over `partitions`
    /// partitions of `topic`.
    pub fn start(bootstrap: &str, topic: &str, partitions: i32, count: usize) -> Result<Self> {
        let mut streams = Vec::with_capacity(count);
        for index in 0..count {
            let mut stream = connect(bootstrap)?;
            let partition = i32::try_from(index).unwrap_or(0) % partitions.max(1);
            let wanted = FetchPartition::default()
                .with_partition(partition)
                .with_partition_max_bytes(PARTITION_FETCH_BYTES);
            let request = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(WIRE_WAITING_FETCH_WAIT_MS)
                .with_min_bytes(1)
                .with_max_bytes(FETCH_MAX_BYTES)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![wanted])]);
            stream
                .write_all(&encode_frame(&request, FETCH_VERSION, 0)?)
                .context("cannot send a waiting Fetch")?;
            streams.push(stream);
        }
        Ok(WaitingFetches { streams })
    }

    /// How many are still waiting (no answer arrived on their connection).
    pub fn still_waiting(&self) -> Result<usize> {
        let mut waiting = 0;
        for stream in &self.streams {
            stream.set_nonblocking(true).context("cannot poll a waiting Fetch")?;
            let mut byte = [0u8; 1];
            match stream.peek(&mut byte) {
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => waiting += 1,
                _ => {}
            }
            stream.set_nonblocking(false).context("cannot poll a waiting Fetch")?;
        }
        Ok(waiting)
    }

    /// How many were started.
    pub fn count(&self) -> usize {
        self.streams.len()
    }

    /// Answers the fetches (a batch in each of the `partitions` partitions of their `topic`)
    /// and reads every answer: a closed connection would not end a Fetch parked in the
    /// broker, and parked ones would still be there in the next run.
    pub fn release(mut self, bootstrap: &str, topic: &str, partitions: i32) -> Result<()> {
        let target = Target { bootstrap, topic, partitions, record_bytes: 1, broker_pid: 0 };
        let mut producer = connect(bootstrap)?;
        producer.write_all(&produce_frame(&target)?).context("cannot send a Produce")?;
        let mut frames = Frames::default();
        read_produce_response(&mut producer, &mut frames)?;
        for stream in &mut self.streams {
            let _: FetchResponse = read_response(stream, &mut frames, FETCH_VERSION)
                .context("a waiting Fetch was not answered")?;
        }
        Ok(())
    }
}

fn connect(bootstrap: &str) -> Result<TcpStream> {
    let stream =
        TcpStream::connect(bootstrap).with_context(|| format!("cannot connect to {bootstrap}"))?;
    stream.set_nodelay(true).context("cannot set TCP_NODELAY")?;
    stream
        .set_read_timeout(Some(Duration::from_secs(ADMIN_TIMEOUT_SECS)))
        .context("cannot set a read timeout")?;
    Ok(stream)
}

/// The Produce request every wire producer sends: a frame with its size prefix.
fn produce_frame(target: &Target<'_>) -> Result<Vec<u8>> {
    let payload = pattern(target.record_bytes);
    let values: Vec<KeyValue<'_>> =
        (0..WIRE_BATCH_RECORDS).map(|_| (None, Some(&payload[..]))).collect();
    let batch = Bytes::from(batch::build_batch(
        &BatchSpec { timestamp_ms: now_ms(), ..BatchSpec::default() },
        &values,
    ));
    let partitions = (0..target.partitions)
        .map(|index| {
            PartitionProduceData::default().with_index(index).with_records(Some(batch.clone()))
        })
        .collect();
    let request =
        ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(target.topic.to_string())))
                .with_partition_data(partitions),
        ]);
    encode_frame(&request, PRODUCE_VERSION, 0)
}

/// A Fetch from `offsets` (one per partition), without a fetch session.
fn fetch_frame(target: &Target<'_>, offsets: &[i64], correlation_id: i32) -> Result<Vec<u8>> {
    let partitions = offsets
        .iter()
        .zip(0..)
        .map(|(offset, index)| {
            FetchPartition::default()
                .with_partition(index)
                .with_fetch_offset(*offset)
                .with_partition_max_bytes(PARTITION_FETCH_BYTES)
        })
        .collect();
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(WIRE_FETCH_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_MAX_BYTES)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(target.topic.to_string())))
            .with_partitions(partitions)]);
    encode_frame(&request, FETCH_VERSION, correlation_id)
}

/// `[size][header][body]` for a request of type `R`.
fn encode_frame<R: Request + Encodable>(
    request: &R,
    version: i16,
    correlation_id: i32,
) -> Result<Vec<u8>> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("sluice-bench-wire")));
    let mut body = BytesMut::new();
    body.put_i32(0);
    header
        .encode(&mut body, R::header_version(version))
        .map_err(|e| anyhow!("cannot encode a request header: {e}"))?;
    request.encode(&mut body, version).map_err(|e| anyhow!("cannot encode a request: {e}"))?;
    let size = i32::try_from(body.len() - 4).context("request over 2 GiB")?;
    body[..4].copy_from_slice(&size.to_be_bytes());
    Ok(body.to_vec())
}

/// The correlation id sits after the size prefix, the api key and the api version.
fn set_correlation_id(frame: &mut [u8], correlation_id: i32) {
    if let Some(field) = frame.get_mut(8..12) {
        field.copy_from_slice(&correlation_id.to_be_bytes());
    }
}

/// Reads one Produce response and fails on any error code in it.
fn read_produce_response(stream: &mut TcpStream, frames: &mut Frames) -> Result<()> {
    let response: ProduceResponse = read_response(stream, frames, PRODUCE_VERSION)?;
    for topic in &response.responses {
        for partition in &topic.partition_responses {
            if partition.error_code != 0 {
                bail!(
                    "Produce to partition {} failed: code {} ({:?})",
                    partition.index,
                    partition.error_code,
                    partition.error_message
                );
            }
        }
    }
    Ok(())
}

/// The memory response frames are read into, reused from one response to the next once
/// nothing decoded from the last one is left, and never zeroed first: a consumer of 7 MiB
/// answers must not spend its time clearing memory it is about to overwrite.
#[derive(Default)]
struct Frames {
    last: Option<Bytes>,
}

impl Frames {
    /// Reads the next `size` bytes of `stream` as one frame.
    fn read(&mut self, stream: &mut TcpStream, size: usize) -> Result<Bytes> {
        let mut memory = match self.last.take().map(Bytes::try_into_mut) {
            Some(Ok(unused)) => Vec::from(unused),
            _ => Vec::new(),
        };
        memory.clear();
        memory.reserve(size);
        // `read_to_end` reads into the spare capacity as it is, without zeroing it.
        let limit = u64::try_from(size).unwrap_or(u64::MAX);
        stream.take(limit).read_to_end(&mut memory).context("cannot read a response")?;
        if memory.len() < size {
            bail!("the broker closed the connection mid-response");
        }
        let frame = Bytes::from(memory);
        self.last = Some(frame.clone());
        Ok(frame)
    }
}

/// Reads one response frame and decodes it as `T` at `version`. Record batches in it are
/// slices of the frame's memory (no copy), which is reused once the response is dropped.
fn read_response<T: Decodable + HeaderVersion>(
    stream: &mut TcpStream,
    frames: &mut Frames,
    version: i16,
) -> Result<T> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).context("the broker closed the connection")?;
    let size = usize::try_from(i32::from_be_bytes(size)).context("negative response size")?;
    if size > WIRE_RESPONSE_BYTES_MAX {
        bail!("a {size}-byte response is over the {WIRE_RESPONSE_BYTES_MAX}-byte limit");
    }
    let mut bytes = frames.read(stream, size)?;
    ResponseHeader::decode(&mut bytes, T::header_version(version))
        .map_err(|e| anyhow!("cannot decode a response header: {e}"))?;
    let response =
        T::decode(&mut bytes, version).map_err(|e| anyhow!("cannot decode a response: {e}"))?;
    if bytes.has_remaining() {
        bail!("{} bytes left after a v{version} response", bytes.remaining());
    }
    Ok(response)
}
