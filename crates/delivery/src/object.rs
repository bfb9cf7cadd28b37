//! An object being built: one source partition's records for one output prefix within one
//! round, gathered as they arrive (bytes, or Parquet rows) and compressed when it is
//! finished, on a blocking thread, while the loop consumes the next round; and its key.
//!
//! The key is fixed when the object opens, from its first record alone (see
//! [`crate::template`]): the arrival time of the first record and a UUID of the stream,
//! source partition, first offset and kind. Whatever else a re-published object holds, it
//! lands under the same key.
use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Utc};

use crate::compression::{Compression, Encoder};
use crate::config::DeliveryStream;
use crate::conversion::Rows;
use crate::template::{default_prefix, file_name, object_id, KeyContext};

/// Firehose's `!{firehose:error-output-type}` for records Parquet conversion rejects.
pub const FORMAT_CONVERSION_FAILED: &str = "format-conversion-failed";
/// ... and for records the metadata extraction query cannot partition.
pub const PROCESSING_FAILED: &str = "processing-failed";

/// What an object holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// Delivered records with these partition-key values (none without partitioning).
    Data(Vec<(String, String)>),
    /// Failed records of one error output type.
    Error(&'static str),
}

/// One source record, borrowed from the consumer.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// Kafka timestamp, Unix ms: the record's arrival time.
    pub timestamp_ms: i64,
}

enum Content {
    /// Records as they will be compressed: compression runs when the object is finished,
    /// off the consuming loop, so it overlaps with consuming the next round.
    Raw {
        bytes: Vec<u8>,
        compression: Compression,
        entry: String,
    },
    Parquet(Rows),
}

/// An object being built.
pub struct OpenObject {
    /// The full key, under the destination's base path.
    pub key: String,
    /// Records written.
    pub records: u64,
    /// Bytes of records written, before compression (what `SizeInMBs` counts).
    pub record_bytes: u64,
    /// The first record's arrival time, Unix ms.
    pub first_timestamp_ms: i64,
    content: Content,
}

impl OpenObject {
    /// Opens the object that `first` starts.
    pub fn open(stream: &DeliveryStream, bucket: &Bucket, first: Source<'_>) -> OpenObject {
        let time =
            DateTime::<Utc>::from_timestamp_millis(first.timestamp_ms.max(0)).unwrap_or_default();
        let (kind, compression) = match bucket {
            Bucket::Data(_) => ("data", stream.compression),
            Bucket::Error(kind) => (*kind, stream.compression),
        };
        let id = object_id(&stream.name, first.topic, first.partition, first.offset, kind);
        let extension = match bucket {
            Bucket::Data(_) => stream.file_extension.as_str(),
            Bucket::Error(_) => compression.extension(),
        };
        let name = file_name(&stream.name, stream.version, time, &id, extension);
        let key = format!("{}{name}", prefix(stream, bucket, time, &id));
        let content = match (&stream.conversion, bucket) {
            (Some(schema), Bucket::Data(_)) => Content::Parquet(Rows::new(Arc::clone(schema))),
            _ => Content::Raw { bytes: Vec::new(), compression, entry: name.clone() },
        };
        OpenObject {
            key,
            records: 0,
            record_bytes: 0,
            first_timestamp_ms: first.timestamp_ms,
            content,
        }
    }

    /// Appends a data record; `Err` carries why Parquet conversion rejected it (nothing
    /// was added).
    pub fn push(&mut self, value: &[u8], delimiter: bool) -> Result<(), String> {
        match &mut self.content {
            Content::Parquet(rows) => rows.push(value)?,
            Content::Raw { bytes, .. } => {
                bytes.extend_from_slice(value);
                if delimiter {
                    bytes.push(b'\n');
                }
            }
        }
        self.records += 1;
        self.record_bytes += value.len() as u64 + u64::from(delimiter);
        Ok(())
    }

    /// Appends a failed record as Firehose's error document (one JSON line).
    pub fn push_error(
        &mut self,
        source: Source<'_>,
        value: &[u8],
        error_type: &str,
        code: &str,
        message: &str,
    ) {
        let now = Utc::now().timestamp_millis();
        let raw = base64::engine::general_purpose::STANDARD.encode(value);
        // Format-conversion failures carry `lastErrorCode`; processing failures `errorCode`.
        let (code_field, message_field) = if error_type == FORMAT_CONVERSION_FAILED {
            ("lastErrorCode", "lastErrorMessage")
        } else {
            ("errorCode", "errorMessage")
        };
        let document = serde_json::json!({
            "attemptsMade": 1,
            "arrivalTimestamp": source.timestamp_ms,
            code_field: code,
            message_field: message,
            "attemptEndingTimestamp": now,
            "rawData": raw,
            "sequenceNumber": source.offset.to_string(),
            "kafkaTopic": source.topic,
            "kafkaPartition": source.partition,
            "kafkaOffset": source.offset,
        });
        let mut line = document.to_string().into_bytes();
        line.push(b'\n');
        if let Content::Raw { bytes, .. } = &mut self.content {
            bytes.extend_from_slice(&line);
        }
        self.records += 1;
        self.record_bytes += line.len() as u64;
    }

    /// Ends the object and returns its bytes: compression or Parquet encoding, CPU-heavy,
    /// so callers run it off the loop.
    pub fn finish(self) -> std::io::Result<Vec<u8>> {
        match self.content {
            Content::Raw { bytes, compression, entry } => {
                let mut encoder = Encoder::new(compression, &entry)?;
                encoder.write(&bytes)?;
                encoder.finish()
            }
            Content::Parquet(rows) => rows.finish().map_err(std::io::Error::other),
        }
    }
}

/// The object's prefix: Firehose's rules for custom, default and error prefixes.
fn prefix(stream: &DeliveryStream, bucket: &Bucket, time: DateTime<Utc>, id: &str) -> String {
    let keys: &[(String, String)] = match bucket {
        Bucket::Data(keys) => keys,
        Bucket::Error(_) => &[],
    };
    let error_output_type = match bucket {
        Bucket::Data(_) => None,
        Bucket::Error(kind) => Some(*kind),
    };
    let context = KeyContext { timestamp: time, id, error_output_type, partition_keys: keys };
    match (bucket, &stream.prefix, &stream.error_output_prefix) {
        (Bucket::Data(_), None, _) => default_prefix(time),
        (Bucket::Data(_), Some(template), _) => {
            let mut out = template.render(&context);
            if !template.has_timestamp() && stream.partitioning.is_none() {
                out.push_str(&default_prefix(time));
            }
            out
        }
        (Bucket::Error(_), _, Some(template)) => {
            let mut out = template.render(&context);
            if !template.has_timestamp() {
                out.push_str(&default_prefix(time));
            }
            out
        }
        (Bucket::Error(kind), data, None) => {
            // Only a prefix without expressions may lack an error prefix (validated).
            let base = data.as_ref().map(|t| t.render(&context)).unwrap_or_default();
            format!("{base}{kind}/{}", default_prefix(time))
        }
    }
}

impl std::fmt::Debug for OpenObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenObject")
            .field("key", &self.key)
            .field("records", &self.records)
            .field("record_bytes", &self.record_bytes)
            .finish()
    }
}

/// The compression of an object's bytes, for its Content-Encoding-like metadata.
pub fn content_type(compression: Compression, parquet: bool) -> &'static str {
    match (parquet, compression) {
        (true, _) => "application/vnd.apache.parquet",
        (false, Compression::Uncompressed) => "application/octet-stream",
        (false, Compression::Gzip) => "application/gzip",
        (false, Compression::Zip) => "application/zip",
        (false, Compression::Snappy | Compression::HadoopSnappy) => "application/x-snappy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DeliveryStreamConfig;

    fn stream(extra: &str) -> DeliveryStream {
        let text = format!("name = \"orders\"\nsource_topic = \"t\"\n{extra}");
        toml::from_str::<DeliveryStreamConfig>(&text).unwrap().validate().unwrap()
    }

    // 2026-03-07T09:05:04Z
    const FIRST: Source<'static> =
        Source { topic: "t", partition: 2, offset: 40, timestamp_ms: 1_772_874_304_000 };

    #[test]
    fn default_keys_are_firehoses() {
        let stream = stream("");
        let object = OpenObject::open(&stream, &Bucket::Data(vec![]), FIRST);
        let id = object_id("orders", "t", 2, 40, "data");
        assert_eq!(object.key, format!("2026/03/07/09/orders-1-2026-03-07-09-05-04-{id}.gz"));
        let error = OpenObject::open(&stream, &Bucket::Error(PROCESSING_FAILED), FIRST);
        assert!(
            error.key.starts_with("processing-failed/2026/03/07/09/orders-1-"),
            "{}",
            error.key
        );
    }

    #[test]
    fn a_prefix_without_a_timestamp_gets_one_appended() {
        let stream = stream("prefix = \"lake/\"");
        let object = OpenObject::open(&stream, &Bucket::Data(vec![]), FIRST);
        assert!(object.key.starts_with("lake/2026/03/07/09/orders-1-"), "{}", object.key);
        let error = OpenObject::open(&stream, &Bucket::Error(FORMAT_CONVERSION_FAILED), FIRST);
        assert!(
            error.key.starts_with("lake/format-conversion-failed/2026/03/07/09/"),
            "{}",
            error.key
        );
    }

    #[test]
    fn the_seeds_prefixes() {
        let stream = stream(
            "prefix = \"data/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/\"\n\
             error_output_prefix = \"errors/year=!{timestamp:yyyy}/!{firehose:error-output-type}/\"",
        );
        let object = OpenObject::open(&stream, &Bucket::Data(vec![]), FIRST);
        assert!(
            object.key.starts_with("data/year=2026/month=03/day=07/hour=09/orders-1-"),
            "{}",
            object.key
        );
        let error = OpenObject::open(&stream, &Bucket::Error(FORMAT_CONVERSION_FAILED), FIRST);
        assert!(
            error.key.starts_with("errors/year=2026/format-conversion-failed/orders-1-"),
            "{}",
            error.key
        );
    }
}
