//! The Firehose API: `PutRecord`, `PutRecordBatch`, `DescribeDeliveryStream` and
//! `ListDeliveryStreams` in AWS JSON 1.1 (`X-Amz-Target: Firehose_20150804.<Operation>`),
//! so AWS SDK code pointed at sluice (`AWS_ENDPOINT_URL_FIREHOSE`) works unchanged.
//!
//! A put is acknowledged only once its records are appended to the stream's backing topic
//! (acks=all, idempotent producer), from where they take the same exactly-once path as a
//! topic source. Firehose's limits and errors: at most 500 records and 4 MiB per
//! `PutRecordBatch`, 1,000 KiB per record; a record that cannot be appended fails alone,
//! counted in `FailedPutCount` with `ServiceUnavailableException`.
//!
//! This module maps requests to responses; the HTTP listener (shared by every AWS-style API
//! sluice serves) lives in the binary.
use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::{DeliveryStream, Source};
use crate::limits::{
    LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, PUT_BATCH_BYTES_MAX, PUT_BATCH_RECORDS_MAX,
    PUT_RECORD_BYTES_MAX,
};

/// The `X-Amz-Target` prefix of Firehose operations.
pub const TARGET_PREFIX: &str = "Firehose_20150804.";
/// The account id in ARNs: sluice has no accounts.
const ACCOUNT: &str = "000000000000";
/// How long a put waits for its records to be appended.
const APPEND_TIMEOUT: Duration = Duration::from_secs(30);

/// An API error: HTTP status, `__type` and message, as AWS returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// AWS's error type (`ResourceNotFoundException`, ...).
    pub kind: &'static str,
    /// What happened and what to change.
    pub message: String,
}

impl ApiError {
    fn new(status: u16, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, kind, message: message.into() }
    }

    /// The JSON body AWS SDKs read the error from.
    pub fn body(&self) -> Vec<u8> {
        json!({"__type": self.kind, "message": self.message}).to_string().into_bytes()
    }
}

/// A stream as the API sees it.
#[derive(Debug, Clone)]
pub struct ApiStream {
    /// The validated stream.
    pub stream: DeliveryStream,
    /// Its resolved destination URL.
    pub destination_url: String,
    /// When it started, Unix seconds (CreateTimestamp).
    pub created_secs: f64,
}

/// The Firehose API over a set of streams.
pub struct Firehose {
    streams: BTreeMap<String, ApiStream>,
    producer: FutureProducer,
    region: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RecordInput {
    data: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordInput {
    delivery_stream_name: String,
    record: RecordInput,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordBatchInput {
    delivery_stream_name: String,
    records: Vec<RecordInput>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeInput {
    delivery_stream_name: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ListInput {
    limit: Option<i64>,
    delivery_stream_type: Option<String>,
    exclusive_start_delivery_stream_name: Option<String>,
}

impl Firehose {
    /// The API over `streams`, appending to their backing topics on `bootstrap_servers`.
    pub fn new(
        streams: Vec<ApiStream>,
        bootstrap_servers: &str,
        client_properties: &[(String, String)],
    ) -> Result<Firehose, rdkafka::error::KafkaError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap_servers)
            .set("client.id", "sluice-firehose-api")
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "2")
            .set("message.max.bytes", (PUT_RECORD_BYTES_MAX + 64 * 1024).to_string());
        for (key, value) in client_properties {
            config.set(key, value);
        }
        let producer = config.create()?;
        let streams = streams.into_iter().map(|s| (s.stream.name.clone(), s)).collect();
        let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
        Ok(Firehose { streams, producer, region })
    }

    /// Handles one operation (`target` without the prefix) and returns the response body.
    pub async fn handle(&self, operation: &str, body: &[u8]) -> Result<Value, ApiError> {
        match operation {
            "PutRecord" => self.put_record(parse(body)?).await,
            "PutRecordBatch" => self.put_record_batch(parse(body)?).await,
            "DescribeDeliveryStream" => self.describe(parse(body)?),
            "ListDeliveryStreams" => {
                self.list(if body.is_empty() { ListInput::default() } else { parse(body)? })
            }
            other => Err(ApiError::new(
                400,
                "UnknownOperationException",
                format!(
                    "sluice serves PutRecord, PutRecordBatch, DescribeDeliveryStream and \
                         ListDeliveryStreams of Firehose, not {other}"
                ),
            )),
        }
    }

    fn stream(&self, name: &str) -> Result<&ApiStream, ApiError> {
        self.streams.get(name).ok_or_else(|| {
            ApiError::new(
                400,
                "ResourceNotFoundException",
                format!("Firehose {name} under account {ACCOUNT} not found."),
            )
        })
    }

    fn direct_put_topic(&self, name: &str) -> Result<&str, ApiError> {
        match &self.stream(name)?.stream.source {
            Source::DirectPut { topic, .. } => Ok(topic),
            Source::Topic(_) => Err(ApiError::new(
                400,
                "InvalidArgumentException",
                "This operation is not permitted on MSKAsSource delivery stream type.",
            )),
        }
    }

    async fn put_record(&self, input: PutRecordInput) -> Result<Value, ApiError> {
        let topic = self.direct_put_topic(&input.delivery_stream_name)?;
        let data = decode(&input.record.data, "record.data")?;
        if data.len() > PUT_RECORD_BYTES_MAX {
            return Err(too_big("record.data", data.len()));
        }
        let id = self
            .append(topic, &data)
            .await
            .map_err(|message| ApiError::new(500, "ServiceUnavailableException", message))?;
        Ok(json!({"RecordId": id, "Encrypted": false}))
    }

    async fn put_record_batch(&self, input: PutRecordBatchInput) -> Result<Value, ApiError> {
        let topic = self.direct_put_topic(&input.delivery_stream_name)?;
        let count = input.records.len();
        if count == 0 || count > PUT_BATCH_RECORDS_MAX {
            return Err(ApiError::new(
                400,
                "ValidationException",
                format!(
                    "1 validation error detected: Value at 'records' failed to satisfy \
                         constraint: Member must have length between 1 and \
                         {PUT_BATCH_RECORDS_MAX} (it has {count}); split the batch"
                ),
            ));
        }
        let mut records = Vec::with_capacity(count);
        let mut total = 0usize;
        for (index, record) in input.records.iter().enumerate() {
            let setting = format!("records.{}.member.data", index + 1);
            let data = decode(&record.data, &setting)?;
            if data.len() > PUT_RECORD_BYTES_MAX {
                return Err(too_big(&setting, data.len()));
            }
            total += data.len();
            records.push(data);
        }
        if total > PUT_BATCH_BYTES_MAX {
            return Err(ApiError::new(
                400,
                "InvalidArgumentException",
                format!("Records size exceeds 4 MB limit ({total} bytes); split the batch"),
            ));
        }
        let appended =
            futures::future::join_all(records.iter().map(|data| self.append(topic, data))).await;
        let failed = appended.iter().filter(|a| a.is_err()).count();
        let responses: Vec<Value> = appended
            .into_iter()
            .map(|outcome| match outcome {
                Ok(id) => json!({"RecordId": id}),
                Err(message) => {
                    json!({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": message})
                }
            })
            .collect();
        Ok(json!({"FailedPutCount": failed, "Encrypted": false, "RequestResponses": responses}))
    }

    /// Appends one record to the backing topic and returns its RecordId.
    async fn append(&self, topic: &str, data: &[u8]) -> Result<String, String> {
        let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(topic).payload(data);
        match self.producer.send(record, APPEND_TIMEOUT).await {
            Ok(delivery) => Ok(format!("{:08x}{:016x}", delivery.partition, delivery.offset)),
            Err((error, _)) => Err(format!("the record was not stored ({error}); retry it")),
        }
    }

    fn describe(&self, input: DescribeInput) -> Result<Value, ApiError> {
        let api = self.stream(&input.delivery_stream_name)?;
        let stream = &api.stream;
        let (kind, source) = match &stream.source {
            Source::DirectPut { .. } => ("DirectPut", Value::Null),
            Source::Topic(topic) => (
                "MSKAsSource",
                json!({"MSKSourceDescription": {"TopicName": topic, "MSKClusterARN":
                    format!("arn:aws:kafka:{}:{ACCOUNT}:cluster/sluice/", self.region)}}),
            ),
        };
        let bucket_arn = match api.destination_url.strip_prefix("s3://") {
            Some(rest) => format!("arn:aws:s3:::{}", rest.split('/').next().unwrap_or(rest)),
            None => api.destination_url.clone(),
        };
        let mut s3 = json!({
            "BucketARN": bucket_arn,
            "Prefix": stream.prefix.as_ref().map_or("", |t| t.text()),
            "ErrorOutputPrefix": stream.error_output_prefix.as_ref().map(|t| t.text()),
            "BufferingHints": {
                "SizeInMBs": stream.buffer_bytes / (1024 * 1024),
                "IntervalInSeconds": stream.interval.as_secs(),
            },
            "CompressionFormat": stream.compression.name(),
            "FileExtension": stream.file_extension,
            "EncryptionConfiguration": {"NoEncryptionConfig": "NoEncryption"},
            "S3BackupMode": "Disabled",
            "DynamicPartitioningConfiguration": {"Enabled": stream.partitioning.is_some()},
            "RoleARN": format!("arn:aws:iam::{ACCOUNT}:role/sluice"),
        });
        if let Some(schema) = &stream.conversion {
            let columns: Vec<Value> = schema
                .columns
                .iter()
                .map(|(n, t)| json!({"Name": n, "Type": format!("{t:?}").to_lowercase()}))
                .collect();
            s3["DataFormatConversionConfiguration"] = json!({"Enabled": true, "Columns": columns});
        }
        let mut description = json!({
            "DeliveryStreamName": stream.name,
            "DeliveryStreamARN": arn(&self.region, &stream.name),
            "DeliveryStreamStatus": "ACTIVE",
            "DeliveryStreamType": kind,
            "VersionId": stream.version.to_string(),
            "CreateTimestamp": api.created_secs,
            "Destinations": [{"DestinationId": "destinationId-000000000001", "ExtendedS3DestinationDescription": s3}],
            "HasMoreDestinations": false,
        });
        if !source.is_null() {
            description["Source"] = source;
        }
        Ok(json!({"DeliveryStreamDescription": description}))
    }

    fn list(&self, input: ListInput) -> Result<Value, ApiError> {
        let limit = input.limit.unwrap_or(LIST_LIMIT_DEFAULT as i64);
        if !(1..=LIST_LIMIT_MAX as i64).contains(&limit) {
            return Err(ApiError::new(
                400,
                "ValidationException",
                format!("Limit {limit} must be between 1 and {LIST_LIMIT_MAX}"),
            ));
        }
        let wanted = input.delivery_stream_type.as_deref();
        let start = input.exclusive_start_delivery_stream_name.unwrap_or_default();
        let mut names: Vec<&String> = self
            .streams
            .iter()
            .filter(|(name, api)| {
                let kind = match api.stream.source {
                    Source::DirectPut { .. } => "DirectPut",
                    Source::Topic(_) => "MSKAsSource",
                };
                name.as_str() > start.as_str() && wanted.is_none_or(|w| w == kind)
            })
            .map(|(name, _)| name)
            .collect();
        let more = names.len() > limit as usize;
        names.truncate(limit as usize);
        Ok(json!({"DeliveryStreamNames": names, "HasMoreDeliveryStreams": more}))
    }
}

/// Firehose's ARN for a stream.
pub fn arn(region: &str, name: &str) -> String {
    format!("arn:aws:firehose:{region}:{ACCOUNT}:deliverystream/{name}")
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            400,
            "SerializationException",
            format!("the request body is not the operation's JSON: {e}"),
        )
    })
}

fn decode(data: &str, setting: &str) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::STANDARD.decode(data).map_err(|e| {
        ApiError::new(
            400,
            "SerializationException",
            format!("'{setting}' can not be converted to a Blob: {e}"),
        )
    })
}

fn too_big(setting: &str, bytes: usize) -> ApiError {
    ApiError::new(
        400,
        "ValidationException",
        format!("1 validation error detected: Value at '{setting}' failed to satisfy constraint: \
                 Member must have length less than or equal to {PUT_RECORD_BYTES_MAX} (it has {bytes})"),
    )
}
