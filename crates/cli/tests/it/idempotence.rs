//! Idempotent producers: librdkafka with `enable.idempotence=true` keeps every record exactly
//! once and in order while the broker is killed with SIGKILL and restarted under it.
//!
//! A kill leaves produce requests whose response never arrived; the producer retries them
//! with the same producer id, epoch and sequence numbers once the broker is back on the same
//! port. Where the first attempt was already written, the restarted broker must recognise
//! the retry from the producer state it rebuilt from its log, answer with the original
//! offsets and append nothing. Without that, those records would be in the log twice.
use std::collections::BTreeMap;
use std::time::Duration;

use futures::stream::{FuturesOrdered, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::producer::FutureRecord;

use crate::support::{create_topic, producer, read_all, start_broker, within};

const TOPIC: &str = "idempotent";
const PARTITION_COUNT: i32 = 2;
const RECORD_COUNT: u32 = 20_000;
/// Sends between 1 ms pauses: about 8 records per ms, so the run spans the kills.
const SENDS_PER_PAUSE: u32 = 8;
const KILL_COUNT: u32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_writes_each_record_once_across_sigkills() {
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut broker = start_broker();
    create_topic(&broker, TOPIC, PARTITION_COUNT, &[]).await;
    let producer = producer(
        &broker.bootstrap(),
        &[
            ("enable.idempotence", "true"),
            ("message.timeout.ms", "120000"),
            ("linger.ms", "5"),
            ("request.timeout.ms", "3000"),
            ("reconnect.backoff.ms", "50"),
            ("reconnect.backoff.max.ms", "200"),
        ],
    );
    let sender = tokio::spawn({
        let producer = producer.clone();
        async move {
            let mut deliveries = FuturesOrdered::new();
            for i in 0..RECORD_COUNT {
                let partition = i32::try_from(i % 2).expect("0 or 1");
                let value = i.to_string();
                let record = FutureRecord::<(), _>::to(TOPIC).partition(partition).payload(&value);
                let delivery = producer.send_result(record).map_err(|(e, _)| e).expect("queued");
                deliveries.push_back(async move { (partition, value, delivery.await) });
                if i % SENDS_PER_PAUSE == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            deliveries.collect::<Vec<_>>().await
        }
    });
    for _ in 0..KILL_COUNT {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(150..500))).await;
        tokio::task::block_in_place(|| {
            broker.kill9().expect("SIGKILL reaches our child");
            std::thread::sleep(Duration::from_millis(rng.gen_range(50..300)));
            broker.restart_on_same_port().expect("the broker restarts on its port");
        });
    }
    let deliveries = within(Duration::from_secs(150), "delivering every record", &broker, sender)
        .await
        .expect("the sender does not panic");
    let mut acked: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for (partition, value, outcome) in deliveries {
        let (delivery, _) = match outcome {
            Ok(Ok(delivery)) => (delivery, ()),
            Ok(Err((error, _))) => panic!("{value} failed: {error}; log:\n{}", broker.log_tail()),
            Err(canceled) => panic!("{value}: {canceled}"),
        };
        acked.entry(partition).or_default().push((delivery.offset, value));
    }
    let stored = read_all(&broker, TOPIC, PARTITION_COUNT, Duration::from_secs(60)).await;
    for partition in 0..PARTITION_COUNT {
        let stored: Vec<(i64, String)> = stored[&partition]
            .iter()
            .map(|r| (r.offset, String::from_utf8(r.value.clone().unwrap_or_default()).unwrap()))
            .collect();
        let acked = &acked[&partition];
        assert_eq!(
            stored.len(),
            acked.len(),
            "partition {partition} holds each sent record once (seed {seed})"
        );
        assert_eq!(&stored, acked, "partition {partition}: log order = send order = acked offsets");
    }
    println!("{} runs of the broker; log tail:\n{}", broker.run_count(), broker.log_tail());
}

mod raw {
    //! The same guarantee checked byte for byte: a batch retried after a SIGKILL gets its
    //! original offsets, and the sequence and epoch errors are Kafka's.
    use bytes::Bytes;
    use kafka_protocol::messages::{InitProducerIdRequest, ProduceResponse, ProducerId};
    use kafka_protocol::ResponseError;
    use sluice_wire::batch::{build_batch, BatchSpec, KeyValue};

    use crate::raw_requests::{connect, create_topic_raw, produce_request, ANSWER_LIMIT};
    use crate::support::start_broker;

    const TOPIC: &str = "raw-idempotent";

    fn batch(producer_id: i64, epoch: i16, sequence: i32, count: usize) -> Bytes {
        let values: Vec<Vec<u8>> = (0..count).map(|i| format!("v{i}").into_bytes()).collect();
        let records: Vec<KeyValue<'_>> =
            values.iter().map(|v| (None, Some(v.as_slice()))).collect();
        let spec = BatchSpec {
            timestamp_ms: 1_700_000_000_000,
            producer_id,
            producer_epoch: epoch,
            base_sequence: sequence,
            ..BatchSpec::default()
        };
        Bytes::from(build_batch(&spec, &records))
    }

    /// Produces one batch with acks=all and returns `(error code, base offset)`.
    fn produce(broker: &sluice_testkit::BrokerProcess, batch: Bytes) -> (i16, i64) {
        let mut conn = connect(broker);
        let response: ProduceResponse = conn
            .round_trip(&produce_request(TOPIC, -1, batch), 9, 1, ANSWER_LIMIT)
            .unwrap_or_else(|error| panic!("produce: {error}; log:\n{}", broker.log_tail()));
        let partition = &response.responses[0].partition_responses[0];
        (partition.error_code, partition.base_offset)
    }

    fn init_producer_id(
        broker: &sluice_testkit::BrokerProcess,
        current: Option<(i64, i16)>,
    ) -> (i64, i16) {
        let (id, epoch) = current.unwrap_or((-1, -1));
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch);
        let response = connect(broker).round_trip(&request, 4, 1, ANSWER_LIMIT).expect("answer");
        assert_eq!(response.error_code, 0, "InitProducerId: {response:?}");
        (response.producer_id.0, response.producer_epoch)
    }

    #[test]
    fn a_batch_retried_after_sigkill_gets_its_original_offsets() {
        let mut broker = start_broker();
        create_topic_raw(&broker, TOPIC, 1);
        let (id, epoch) = init_producer_id(&broker, None);
        assert_eq!(produce(&broker, batch(id, epoch, 0, 3)), (0, 0));
        assert_eq!(produce(&broker, batch(id, epoch, 3, 2)), (0, 3));
        broker.kill9().expect("SIGKILL");
        broker.restart().expect("restart");

        assert_eq!(produce(&broker, batch(id, epoch, 3, 2)), (0, 3), "the retry is deduplicated");
        assert_eq!(produce(&broker, batch(id, epoch, 0, 3)), (0, 0), "so is an older cached one");
        let gap = produce(&broker, batch(id, epoch, 7, 1));
        assert_eq!(gap.0, ResponseError::OutOfOrderSequenceNumber.code(), "a gap: {gap:?}");
        assert_eq!(produce(&broker, batch(id, epoch, 5, 1)), (0, 5), "nothing was appended twice");

        let (same_id, bumped) = init_producer_id(&broker, Some((id, epoch)));
        assert_eq!((same_id, bumped), (id, epoch + 1), "KIP-360: same id, next epoch");
        assert_eq!(produce(&broker, batch(id, bumped, 0, 1)), (0, 6));
        let fenced = produce(&broker, batch(id, epoch, 6, 1));
        assert_eq!(fenced.0, ResponseError::InvalidProducerEpoch.code(), "fenced: {fenced:?}");
    }
}
