//! Produce and consume through rdkafka, plus the admin and offset APIs around them.
//!
//! - 100 000 keyed records per compression codec (one topic and one broker each) come back
//!   exactly once and in order per partition, at the offsets the acks named.
//! - ListOffsets by timestamp, watermarks, DescribeConfigs, AlterConfigs, auto-creation by
//!   Metadata and by Produce, DeleteTopics, and CreateTopics refusing a replication factor the
//!   single broker cannot meet: each answered as Apache Kafka answers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::DescribeConfigsRequest;
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{
    AlterConfig, ConfigSource, NewTopic, OwnedResourceSpecifier, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::consumer::Consumer;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use sluice_testkit::BrokerProcess;

use crate::raw_requests::{connect, ANSWER_LIMIT};
use crate::support::{
    admin, admin_options, assign_consumer, client_config, create_topic, eventually, producer,
    read_all, start_broker, within, REQUEST_TIMEOUT,
};

/// Records produced per codec: enough for many batches per partition and several segments'
/// worth of index entries, small enough for a debug build.
const RECORD_COUNT: usize = 100_000;

/// Partitions of each codec's topic; record `i` goes to partition `i % PARTITION_COUNT`.
const PARTITION_COUNT: i32 = 4;

/// Bytes per record value; 1 KiB values make the debug-build run too slow.
const VALUE_BYTES: usize = 100;

/// Records sent before awaiting their acks; well under librdkafka's 100 000-message queue.
const SEND_CHUNK_COUNT: usize = 10_000;

/// Time for producing all records of one codec, acks included, on a loaded 2-core machine.
const PRODUCE_LIMIT: Duration = Duration::from_secs(240);

/// Time for reading them all back.
const CONSUME_LIMIT: Duration = Duration::from_secs(180);

/// Kafka's resource type code for a topic in config requests.
const TOPIC_RESOURCE_TYPE: i8 = 2;

/// Kafka's error code for a topic or partition the broker does not have.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

fn record_key(index: usize) -> String {
    format!("key-{index:06}")
}

/// A value that names its record and is padded to [`VALUE_BYTES`], so a record served at the
/// wrong offset or with a foreign value cannot pass.
fn record_value(index: usize) -> Vec<u8> {
    let mut value = format!("value-{index:06}-").into_bytes();
    let fill = b'a' + u8::try_from(index % 26).expect("a remainder of 26 fits u8");
    value.resize(VALUE_BYTES, fill);
    value
}

fn record_partition(index: usize) -> i32 {
    i32::try_from(index).expect("RECORD_COUNT fits i32") % PARTITION_COUNT
}

/// Record `index` lands at this offset of its partition in a fresh topic, since records of
/// one partition are sent, and acked, in index order.
fn record_offset(index: usize) -> i64 {
    i64::try_from(index).expect("RECORD_COUNT fits i64") / i64::from(PARTITION_COUNT)
}

/// Sends `count` numbered records in chunks and checks each ack names the expected offset.
async fn produce_numbered(broker: &BrokerProcess, producer: &FutureProducer, topic: &str) {
    for chunk_start in (0..RECORD_COUNT).step_by(SEND_CHUNK_COUNT) {
        let chunk_end = (chunk_start + SEND_CHUNK_COUNT).min(RECORD_COUNT);
        let mut deliveries = Vec::with_capacity(chunk_end - chunk_start);
        for index in chunk_start..chunk_end {
            let key = record_key(index);
            let value = record_value(index);
            let record = FutureRecord::to(topic)
                .partition(record_partition(index))
                .key(&key)
                .payload(&value);
            let delivery = producer
                .send_result(record)
                .map_err(|(error, _)| error)
                .unwrap_or_else(|error| panic!("queueing record {index}: {error}"));
            deliveries.push(delivery);
        }
        for (index, delivery) in (chunk_start..).zip(join_all(deliveries).await) {
            let delivery = delivery.expect("the producer outlives its deliveries").unwrap_or_else(
                |(error, _)| {
                    panic!("record {index} was not acked: {error}; log:\n{}", broker.log_tail())
                },
            );
            assert_eq!(delivery.partition, record_partition(index), "record {index}");
            assert_eq!(delivery.offset, record_offset(index), "record {index}");
        }
    }
}

/// Produces [`RECORD_COUNT`] records compressed with `codec` and reads them all back.
async fn round_trips_every_record_in_order(codec: &str) {
    let broker = start_broker();
    let topic = format!("codec-{codec}");
    create_topic(&broker, &topic, PARTITION_COUNT, &[]).await;
    let producer = producer(
        &broker.bootstrap(),
        &[("compression.type", codec), ("linger.ms", "5"), ("batch.num.messages", "2000")],
    );
    within(PRODUCE_LIMIT, "producing", &broker, produce_numbered(&broker, &producer, &topic)).await;

    let records = read_all(&broker, &topic, PARTITION_COUNT, CONSUME_LIMIT).await;
    let per_partition = RECORD_COUNT / usize::try_from(PARTITION_COUNT).expect("positive");
    for (partition, records) in &records {
        assert_eq!(records.len(), per_partition, "records in partition {partition}");
        for (position, record) in records.iter().enumerate() {
            let index = position * usize::try_from(PARTITION_COUNT).expect("positive")
                + usize::try_from(*partition).expect("partitions are non-negative");
            assert_eq!(record.offset, record_offset(index), "partition {partition}");
            assert_eq!(record.key.as_deref(), Some(record_key(index).as_bytes()), "{index}");
            assert_eq!(record.value.as_deref(), Some(record_value(index).as_slice()), "{index}");
        }
    }
}

macro_rules! codec_test {
    ($name:ident, $codec:literal) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            round_trips_every_record_in_order($codec).await;
        }
    };
}

codec_test!(round_trips_100k_uncompressed_records_in_order, "none");
codec_test!(round_trips_100k_gzip_records_in_order, "gzip");
codec_test!(round_trips_100k_snappy_records_in_order, "snappy");
codec_test!(round_trips_100k_lz4_records_in_order, "lz4");
codec_test!(round_trips_100k_zstd_records_in_order, "zstd");

/// Records per pair of codecs in [`stores_batches_in_the_topic_compression_type`].
const RECOMPRESSED_COUNT: usize = 2_000;

/// The codec ids (attribute bits 0..=2) of every batch in a partition's segment files.
fn stored_codecs(broker: &BrokerProcess, topic: &str, partition: i32) -> Vec<i16> {
    let dir = broker.data_dir().join("log").join(format!("{topic}-{partition}"));
    let mut segments: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    let mut codecs = Vec::new();
    for segment in segments {
        let bytes = std::fs::read(&segment).expect("the segment reads");
        let mut at = 0;
        while at < bytes.len() {
            let header = sluice_wire::batch::parse_header(&bytes[at..])
                .unwrap_or_else(|error| panic!("{} at byte {at}: {error}", segment.display()));
            codecs.push(header.attributes & 0x07);
            at += header.total_bytes;
        }
        assert_eq!(at, bytes.len(), "{} ends with its last batch", segment.display());
    }
    codecs
}

/// A topic's `compression.type` other than `producer` rewrites every batch a producer sends
/// in another codec (Kafka's LogValidator): consumers read the same records, and the segment
/// files hold only the topic's codec.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_batches_in_the_topic_compression_type() {
    let broker = start_broker();
    // (topic compression.type, its attribute id, the producer's codec)
    let pairs = [
        ("gzip", 1, "none"),
        ("uncompressed", 0, "lz4"),
        ("zstd", 4, "snappy"),
        ("snappy", 2, "zstd"),
        ("lz4", 3, "gzip"),
    ];
    for (topic_codec, id, producer_codec) in pairs {
        let topic = format!("stored-{topic_codec}");
        create_topic(&broker, &topic, 1, &[("compression.type", topic_codec)]).await;
        let producer = producer(
            &broker.bootstrap(),
            &[
                ("compression.type", producer_codec),
                ("linger.ms", "5"),
                ("batch.num.messages", "500"),
            ],
        );
        let sends = (0..RECOMPRESSED_COUNT).map(|index| {
            let key = record_key(index);
            let value = record_value(index);
            let producer = &producer;
            let topic = &topic;
            async move {
                let record = FutureRecord::to(topic).partition(0).key(&key).payload(&value);
                producer.send(record, Duration::from_secs(30)).await
            }
        });
        let acks = within(PRODUCE_LIMIT, "producing", &broker, join_all(sends)).await;
        for (index, ack) in acks.into_iter().enumerate() {
            let delivery = ack.unwrap_or_else(|(error, _)| panic!("record {index}: {error}"));
            assert_eq!(delivery.offset, i64::try_from(index).expect("fits"), "record {index}");
        }
        let records = read_all(&broker, &topic, 1, CONSUME_LIMIT).await;
        let records = &records[&0];
        assert_eq!(records.len(), RECOMPRESSED_COUNT, "{topic}");
        for (index, record) in records.iter().enumerate() {
            assert_eq!(record.key.as_deref(), Some(record_key(index).as_bytes()), "{topic}");
            assert_eq!(record.value.as_deref(), Some(record_value(index).as_slice()), "{topic}");
        }
        let codecs = stored_codecs(&broker, &topic, 0);
        assert!(!codecs.is_empty(), "{topic} has batches");
        assert!(codecs.iter().all(|c| *c == id), "{topic} ({producer_codec} sent): {codecs:?}");
    }
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is past 1970");
    i64::try_from(since_epoch.as_millis()).expect("milliseconds since 1970 fit i64")
}

/// The offset ListOffsets returns for `timestamp_ms` on partition 0 of `topic`.
fn offset_for_time(broker: &BrokerProcess, topic: &str, timestamp_ms: i64) -> Offset {
    let consumer = assign_consumer(&broker.bootstrap());
    let mut query = TopicPartitionList::new();
    query.add_partition_offset(topic, 0, Offset::Offset(timestamp_ms)).expect("valid offset");
    let answer = consumer
        .offsets_for_times(query, REQUEST_TIMEOUT)
        .unwrap_or_else(|error| panic!("ListOffsets: {error}; log:\n{}", broker.log_tail()));
    let element = answer.find_partition(topic, 0).expect("the answer names the partition");
    element.error().expect("no per-partition error");
    element.offset()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_offsets_by_timestamp_and_reports_watermarks() {
    let broker = start_broker();
    let topic = "timestamps";
    create_topic(&broker, topic, 1, &[]).await;
    let producer = producer(&broker.bootstrap(), &[]);
    let base_ms = now_ms() - 60_000;
    for index in 0..10i64 {
        let value = format!("at-{index}");
        let record = FutureRecord::<(), _>::to(topic)
            .partition(0)
            .payload(&value)
            .timestamp(base_ms + 1000 * index);
        let delivery = within(
            REQUEST_TIMEOUT,
            "producing",
            &broker,
            producer.send(record, Duration::from_secs(5)),
        )
        .await
        .unwrap_or_else(|(error, _)| panic!("record {index}: {error}"));
        assert_eq!(delivery.offset, index);
    }

    let consumer = assign_consumer(&broker.bootstrap());
    let watermarks = consumer.fetch_watermarks(topic, 0, REQUEST_TIMEOUT).expect("watermarks");
    assert_eq!(watermarks, (0, 10), "low and high watermark");

    // ListOffsets answers with the first offset whose timestamp is at or after the target.
    assert_eq!(offset_for_time(&broker, topic, base_ms + 3000), Offset::Offset(3));
    assert_eq!(offset_for_time(&broker, topic, base_ms + 3500), Offset::Offset(4));
    assert_eq!(offset_for_time(&broker, topic, base_ms - 5000), Offset::Offset(0));
    // No record that late: Kafka answers offset -1, which librdkafka reports as End.
    assert_eq!(offset_for_time(&broker, topic, base_ms + 60_000), Offset::End);
}

/// One config entry of `topic`, via DescribeConfigs: its value, whether it was set on the
/// topic (source DYNAMIC_TOPIC_CONFIG), and whether it is the default.
async fn describe_topic_config(
    broker: &BrokerProcess,
    topic: &str,
    name: &str,
) -> (Option<String>, bool, bool) {
    let admin = admin(&broker.bootstrap());
    let specifier = ResourceSpecifier::Topic(topic);
    let results = within(REQUEST_TIMEOUT * 2, "DescribeConfigs", broker, async {
        admin.describe_configs([&specifier], &admin_options()).await
    })
    .await
    .expect("DescribeConfigs is answered");
    assert_eq!(results.len(), 1, "one result per resource");
    let resource = results[0].as_ref().expect("the topic exists");
    let entry = resource.get(name).unwrap_or_else(|| panic!("{topic} has no {name} entry"));
    let set_on_topic = matches!(entry.source, ConfigSource::DynamicTopic);
    (entry.value.clone(), set_on_topic, entry.is_default)
}

/// DescribeConfigs of a topic that does not exist answers UNKNOWN_TOPIC_OR_PARTITION (3) for
/// that resource. rdkafka drops per-resource errors of DescribeConfigs, so this asks raw.
fn assert_unknown_topic_has_no_configs(broker: &BrokerProcess) {
    let resource = DescribeConfigsResource::default()
        .with_resource_type(TOPIC_RESOURCE_TYPE)
        .with_resource_name(StrBytes::from_static_str("no-such-topic"));
    let request = DescribeConfigsRequest::default().with_resources(vec![resource]);
    let response = connect(broker)
        .round_trip(&request, 1, 1, ANSWER_LIMIT)
        .unwrap_or_else(|error| panic!("DescribeConfigs: {error}; log:\n{}", broker.log_tail()));
    assert_eq!(response.results.len(), 1, "one result per resource");
    assert_eq!(response.results[0].error_code, UNKNOWN_TOPIC_OR_PARTITION, "{response:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describes_and_alters_topic_configs() {
    let broker = start_broker();
    let topic = "configured";
    create_topic(&broker, topic, 1, &[("retention.ms", "3600000")]).await;

    let (value, set_on_topic, is_default) =
        describe_topic_config(&broker, topic, "retention.ms").await;
    assert_eq!(value.as_deref(), Some("3600000"));
    assert!(set_on_topic, "retention.ms comes from the topic's own config");
    assert!(!is_default, "retention.ms was set at creation");
    let (value, _, is_default) = describe_topic_config(&broker, topic, "cleanup.policy").await;
    assert_eq!(value.as_deref(), Some("delete"), "Kafka's default cleanup.policy");
    assert!(is_default, "cleanup.policy was never set");

    let admin = admin(&broker.bootstrap());
    let alter = AlterConfig::new(ResourceSpecifier::Topic(topic)).set("retention.ms", "7200000");
    let results = within(REQUEST_TIMEOUT * 2, "AlterConfigs", &broker, async {
        admin.alter_configs([&alter], &admin_options()).await
    })
    .await
    .expect("AlterConfigs is answered");
    assert_eq!(results, vec![Ok(OwnedResourceSpecifier::Topic(topic.to_string()))]);
    let (value, _, _) = describe_topic_config(&broker, topic, "retention.ms").await;
    assert_eq!(value.as_deref(), Some("7200000"), "the altered value is described");

    assert_unknown_topic_has_no_configs(&broker);
}

/// Partition count of `topic` in a Metadata answer, or `None` while it has an error
/// (Kafka answers LEADER_NOT_AVAILABLE until an auto-created topic is ready).
fn ready_partition_count(client: &impl Consumer, topic: &str) -> Option<usize> {
    let metadata = client.fetch_metadata(Some(topic), REQUEST_TIMEOUT).ok()?;
    let found = metadata.topics().iter().find(|candidate| candidate.name() == topic)?;
    match found.error() {
        Some(_) => None,
        None => Some(found.partitions().len()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_creates_topics_on_metadata_and_produce() {
    let broker = start_broker();
    let consumer: rdkafka::consumer::StreamConsumer = client_config(&broker.bootstrap())
        .set("allow.auto.create.topics", "true")
        .create()
        .expect("consumer config is valid");
    let partitions = eventually(Duration::from_secs(15), || {
        ready_partition_count(&consumer, "auto-by-metadata")
    })
    .await
    .unwrap_or_else(|| panic!("never auto-created; log:\n{}", broker.log_tail()));
    assert_eq!(partitions, 1, "Kafka's default num.partitions is 1");

    let producer = producer(&broker.bootstrap(), &[]);
    let record = FutureRecord::<(), _>::to("auto-by-produce").payload("first");
    let delivery = within(
        REQUEST_TIMEOUT * 2,
        "producing",
        &broker,
        producer.send(record, Duration::from_secs(5)),
    )
    .await
    .unwrap_or_else(|(error, _)| panic!("produce to a new topic: {error}"));
    assert_eq!((delivery.partition, delivery.offset), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_a_topic_and_recreates_it_empty() {
    let broker = start_broker();
    let topic = "doomed";
    create_topic(&broker, topic, 2, &[]).await;
    let producer = producer(&broker.bootstrap(), &[]);
    let record = FutureRecord::<(), _>::to(topic).partition(1).payload("soon gone");
    within(REQUEST_TIMEOUT, "producing", &broker, producer.send(record, Duration::from_secs(5)))
        .await
        .unwrap_or_else(|(error, _)| panic!("produce: {error}"));

    let admin = admin(&broker.bootstrap());
    let results = admin.delete_topics(&[topic], &admin_options()).await.expect("answered");
    assert_eq!(results, vec![Ok(topic.to_string())]);
    let consumer = assign_consumer(&broker.bootstrap());
    let gone = eventually(Duration::from_secs(10), || {
        let metadata = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT).ok()?;
        let found = metadata.topics().iter().find(|candidate| candidate.name() == topic);
        let unknown = found.is_none_or(|found| {
            found.error().map(RDKafkaErrorCode::from)
                == Some(RDKafkaErrorCode::UnknownTopicOrPartition)
        });
        unknown.then_some(())
    })
    .await;
    assert!(gone.is_some(), "Metadata still shows {topic}; log:\n{}", broker.log_tail());

    let results = admin.delete_topics(&[topic], &admin_options()).await.expect("answered");
    let expected = Err((topic.to_string(), RDKafkaErrorCode::UnknownTopicOrPartition));
    assert_eq!(results, vec![expected]);

    create_topic(&broker, topic, 1, &[]).await;
    let watermarks = consumer.fetch_watermarks(topic, 0, REQUEST_TIMEOUT).expect("watermarks");
    assert_eq!(watermarks, (0, 0), "a recreated topic starts empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_replication_factor_above_the_broker_count_and_duplicate_topics() {
    let broker = start_broker();
    let admin = admin(&broker.bootstrap());
    let replicated = NewTopic::new("replicated", 1, TopicReplication::Fixed(2));
    let results = admin.create_topics([&replicated], &admin_options()).await.expect("answered");
    let expected = Err(("replicated".to_string(), RDKafkaErrorCode::InvalidReplicationFactor));
    assert_eq!(results, vec![expected], "one broker cannot hold two replicas");

    create_topic(&broker, "single", 1, &[]).await;
    let again = NewTopic::new("single", 1, TopicReplication::Fixed(1));
    let results = admin.create_topics([&again], &admin_options()).await.expect("answered");
    let expected = Err(("single".to_string(), RDKafkaErrorCode::TopicAlreadyExists));
    assert_eq!(results, vec![expected]);
}
