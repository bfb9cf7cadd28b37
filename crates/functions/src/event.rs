//! Lambda's Kafka event, byte for byte: what a handler written for an MSK or self-managed
//! Kafka event source mapping receives (`docs/design/functions-spec.md` has the documented
//! shape and `docs/design/fixtures/` the documentation's examples, which the tests compare
//! with).
//!
//! ```json
//! {"eventSource": "aws:kafka", "eventSourceArn": "arn:aws:kafka:...",
//!  "bootstrapServers": "b-1:9092,b-2:9092",
//!  "records": {"mytopic-0": [{"topic": "mytopic", "partition": 0, "offset": 15,
//!    "timestamp": 1545084650987, "timestampType": "CREATE_TIME",
//!    "key": "a2V5", "value": "dmFsdWU=", "headers": [{"headerKey": [104, 105]}]}]}}
//! ```
//!
//! Each record is serialised once, when it is polled ([`Prepared`]); an event is those bytes
//! joined inside the envelope, so the batcher knows a batch's exact payload size before it
//! builds it, and keeps every event within Lambda's 6 MB limit.
use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::Serialize;

use crate::config::EventSource;

/// One Kafka record, as polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its timestamp, Unix milliseconds.
    pub timestamp_ms: i64,
    /// Whether the producer or the broker set the timestamp.
    pub timestamp_type: TimestampType,
    /// The key; `None` is a null key.
    pub key: Option<Vec<u8>>,
    /// The value; `None` is a null value (a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers in order; a header value may be null.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Kafka's timestamp types, named as Lambda names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Set by the producer.
    CreateTime,
    /// Set by the broker on append.
    LogAppendTime,
}

/// A record serialised for events, with what the batcher and the retry policy need.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The record's offset.
    pub offset: i64,
    /// Its timestamp, Unix milliseconds (for MaximumRecordAgeInSeconds).
    pub timestamp_ms: i64,
    /// Its JSON object in the event's `records` array.
    pub json: Vec<u8>,
    /// FilterCriteria left it out: it is committed with its batch, never invoked.
    pub filtered: bool,
}

/// The record as Lambda writes it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventRecord<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: i64,
    timestamp_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    value: Option<String>,
    headers: Vec<BTreeMap<&'a str, Vec<i8>>>,
}

impl Record {
    /// Serialises the record once for every event it will be part of.
    pub fn prepare(&self) -> Prepared {
        let headers = self
            .headers
            .iter()
            .map(|(name, value)| {
                // Lambda's pollers run on the JVM, and Java bytes are signed: a header byte
                // 0xE2 appears as -30. A null header value appears as an empty array.
                let bytes = value.as_deref().unwrap_or_default().iter().map(|b| *b as i8).collect();
                BTreeMap::from([(name.as_str(), bytes)])
            })
            .collect();
        let record = EventRecord {
            topic: &self.topic,
            partition: self.partition,
            offset: self.offset,
            timestamp: self.timestamp_ms,
            timestamp_type: match self.timestamp_type {
                TimestampType::CreateTime => "CREATE_TIME",
                TimestampType::LogAppendTime => "LOG_APPEND_TIME",
            },
            key: self.key.as_deref().map(|k| BASE64.encode(k)),
            value: self.value.as_deref().map(|v| BASE64.encode(v)),
            headers,
        };
        let json = serde_json::to_vec(&record).unwrap_or_else(|_| b"{}".to_vec());
        Prepared { offset: self.offset, timestamp_ms: self.timestamp_ms, json, filtered: false }
    }
}

/// What every event of one function carries besides its records.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// `eventSource` and whether there is an ARN.
    pub event_source: EventSource,
    /// `eventSourceArn` (MSK only).
    pub event_source_arn: String,
    /// `bootstrapServers`: the comma-separated list the function consumes from.
    pub bootstrap_servers: String,
}

impl Envelope {
    /// The envelope's bytes before the records of `topic`-`partition`, and after them.
    fn parts(&self, topic: &str, partition: i32) -> (String, &'static str) {
        let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        let mut head = String::from("{\"eventSource\":");
        match self.event_source {
            EventSource::Msk => {
                head.push_str("\"aws:kafka\",\"eventSourceArn\":");
                head.push_str(&quote(&self.event_source_arn));
            }
            EventSource::SelfManaged => head.push_str("\"SelfManagedKafka\""),
        }
        head.push_str(",\"bootstrapServers\":");
        head.push_str(&quote(&self.bootstrap_servers));
        head.push_str(",\"records\":{");
        head.push_str(&quote(&format!("{topic}-{partition}")));
        head.push_str(":[");
        (head, "]}}")
    }

    /// The bytes an event of `records` from one partition adds around them.
    pub fn overhead_bytes(&self, topic: &str, partition: i32) -> usize {
        let (head, tail) = self.parts(topic, partition);
        head.len() + tail.len()
    }

    /// The event for `records`, all of `topic`-`partition`, in offset order.
    pub fn event(&self, topic: &str, partition: i32, records: &[Prepared]) -> Vec<u8> {
        let (head, tail) = self.parts(topic, partition);
        let body: usize = records.iter().map(|r| r.json.len() + 1).sum();
        let mut out = Vec::with_capacity(head.len() + body + tail.len());
        out.extend_from_slice(head.as_bytes());
        for (index, record) in records.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&record.json);
        }
        out.extend_from_slice(tail.as_bytes());
        out
    }
}

/// The size of an event of `records` without building it.
pub fn event_bytes(overhead_bytes: usize, records: &[Prepared]) -> usize {
    let commas = records.len().saturating_sub(1);
    overhead_bytes + commas + records.iter().map(|r| r.json.len()).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64, key: Option<&[u8]>) -> Record {
        Record {
            topic: "mytopic".into(),
            partition: 0,
            offset,
            timestamp_ms: 1_545_084_650_987,
            timestamp_type: TimestampType::CreateTime,
            key: key.map(<[u8]>::to_vec),
            value: Some(b"Hello, this is a test.".to_vec()),
            headers: vec![("headerKey".into(), Some(b"headerValue".to_vec()))],
        }
    }

    #[test]
    fn events_are_valid_json_of_lambdas_shape() {
        let envelope = Envelope {
            event_source: EventSource::Msk,
            event_source_arn: "arn:aws:kafka:us-east-1:000000000000:cluster/sluice/x".into(),
            bootstrap_servers: "127.0.0.1:9092".into(),
        };
        let records = [record(15, Some(b"k")), record(16, None)].map(|r| r.prepare());
        let event = envelope.event("mytopic", 0, &records);
        assert_eq!(event.len(), event_bytes(envelope.overhead_bytes("mytopic", 0), &records));
        let json: serde_json::Value = serde_json::from_slice(&event).unwrap();
        assert_eq!(json["eventSource"], "aws:kafka");
        let batch = json["records"]["mytopic-0"].as_array().unwrap();
        assert_eq!(batch[0]["key"], "aw==");
        assert!(batch[1].get("key").is_none(), "a null key is absent");
        assert_eq!(batch[1]["value"], "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==");
        assert_eq!(batch[1]["headers"][0]["headerKey"][0], 104);
    }

    /// The documentation's example events (docs/design/fixtures, from Lambda's developer
    /// guide), rebuilt from their record: equal field by field. The example's key is not
    /// valid base64, so the key is compared as "present and base64 of the record's key".
    #[test]
    fn events_match_the_documented_examples_field_by_field() {
        let fixtures = [
            (EventSource::Msk, include_str!("../../../docs/design/fixtures/msk-event.json")),
            (
                EventSource::SelfManaged,
                include_str!("../../../docs/design/fixtures/self-managed-kafka-event.json"),
            ),
        ];
        for (event_source, fixture) in fixtures {
            let mut expected: serde_json::Value = serde_json::from_str(fixture).unwrap();
            let envelope = Envelope {
                event_source,
                event_source_arn: expected["eventSourceArn"].as_str().unwrap_or("").to_string(),
                bootstrap_servers: expected["bootstrapServers"].as_str().unwrap().to_string(),
            };
            let record = Record {
                topic: "mytopic".into(),
                partition: 0,
                offset: 15,
                timestamp_ms: 1_545_084_650_987,
                timestamp_type: TimestampType::CreateTime,
                key: Some(b"a key".to_vec()),
                value: Some(b"Hello, this is a test.".to_vec()),
                headers: vec![("headerKey".into(), Some(b"headerValue".to_vec()))],
            };
            let keyless = Record { key: None, ..record.clone() };
            let built = envelope.event("mytopic", 0, &[record.prepare()]);
            let mut built: serde_json::Value = serde_json::from_slice(&built).unwrap();
            let key = &mut built["records"]["mytopic-0"][0]["key"];
            assert_eq!(BASE64.decode(key.as_str().unwrap()).unwrap(), b"a key");
            *key = expected["records"]["mytopic-0"][0]["key"].take();
            expected["records"]["mytopic-0"][0]["key"] = key.clone();
            assert_eq!(built, expected, "{event_source:?}");
            // A null key: the documented record without its `key` field.
            let built = envelope.event("mytopic", 0, &[keyless.prepare()]);
            let built: serde_json::Value = serde_json::from_slice(&built).unwrap();
            if let Some(record) = expected["records"]["mytopic-0"][0].as_object_mut() {
                record.remove("key");
            }
            assert_eq!(built, expected, "{event_source:?}, null key");
        }
    }

    #[test]
    fn self_managed_events_have_no_arn() {
        let envelope = Envelope {
            event_source: EventSource::SelfManaged,
            event_source_arn: "ignored".into(),
            bootstrap_servers: "b:9092".into(),
        };
        let event = envelope.event("t", 3, &[record(1, None).prepare()]);
        let json: serde_json::Value = serde_json::from_slice(&event).unwrap();
        assert_eq!(json["eventSource"], "SelfManagedKafka");
        assert!(json.get("eventSourceArn").is_none());
        assert!(json["records"]["t-3"].is_array());
    }
}
