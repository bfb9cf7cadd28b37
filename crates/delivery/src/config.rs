//! A `[[delivery_stream]]` of the solution file: [`DeliveryStreamConfig`] as written, and
//! [`DeliveryStream`], what [`DeliveryStreamConfig::validate`] makes of it and the running
//! code sees. Settings carry Firehose's names in snake_case (`buffering_hints.size_in_mbs`
//! is BufferingHints.SizeInMBs, `compression_format` is CompressionFormat, ...), with
//! Firehose's defaults and ranges. Every setting is checked at start-up; an error names the
//! stream, the setting, the value and what to change.
//!
//! ```toml
//! [[delivery_stream]]
//! name = "orders-to-lake"
//! source_topic = "orders"                  # omit to take records from the Firehose API
//! destination_url = "s3://my-bucket/lake"  # default: file://<data dir>/objects/<name>
//! prefix = "data/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/"
//! error_output_prefix = "errors/!{firehose:error-output-type}/"
//! buffering_hints = { size_in_mbs = 5, interval_in_seconds = 300 }
//! compression_format = "GZIP"
//! ```
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::compression::Compression;
use crate::conversion::{ColumnType, Schema};
use crate::error::{Error, Result};
use crate::limits::{
    INTERVAL_SECS_DEFAULT, INTERVAL_SECS_MAX, PREFIX_BYTES_MAX, SCHEMA_COLUMNS_MAX,
    SIZE_IN_MBS_DEFAULT, SIZE_IN_MBS_MAX, SIZE_IN_MBS_MIN, STREAM_NAME_BYTES_MAX,
};
use crate::query::Query;
use crate::template::{PrefixKind, Template};

/// One `[[delivery_stream]]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryStreamConfig {
    /// DeliveryStreamName: 1 to 64 of letters, digits, `_`, `.` and `-`.
    pub name: String,
    /// The topic to deliver (Firehose's MSK source). Without it the stream is a DirectPut
    /// stream fed by the Firehose API through its backing topic.
    pub source_topic: Option<String>,
    /// The backing topic of a DirectPut stream (default `sluice-firehose-<name>`).
    pub backing_topic: Option<String>,
    /// Partitions of the backing topic when sluice creates it (default 1).
    pub backing_topic_partitions: Option<i64>,
    /// Where objects go: `file:///path` or `s3://bucket/prefix` (default: a folder under
    /// the data folder).
    pub destination_url: Option<String>,
    /// object_store options for the destination (`aws_endpoint`, `aws_region`, ...).
    #[serde(default)]
    pub destination_options: std::collections::BTreeMap<String, String>,
    /// Prefix: a key prefix with `!{...}` expressions (default `YYYY/MM/dd/HH/`).
    pub prefix: Option<String>,
    /// ErrorOutputPrefix (default `<error-output-type>/YYYY/MM/dd/HH/`).
    pub error_output_prefix: Option<String>,
    /// BufferingHints.
    pub buffering_hints: Option<BufferingHintsConfig>,
    /// CompressionFormat: UNCOMPRESSED, GZIP (default), ZIP, Snappy or HADOOP_SNAPPY.
    pub compression_format: Option<String>,
    /// FileExtension: overrides the compression's extension (`.gz`, ...); starts with `.`.
    pub file_extension: Option<String>,
    /// The AppendDelimiterToRecord processor: a newline after each record.
    pub append_delimiter_to_record: Option<bool>,
    /// DynamicPartitioningConfiguration.Enabled.
    pub dynamic_partitioning: Option<bool>,
    /// The MetadataExtractionQuery processor: `{key: .path, ...}`.
    pub metadata_extraction_query: Option<String>,
    /// DataFormatConversionConfiguration: JSON to Parquet.
    pub record_format_conversion: Option<FormatConversionConfig>,
    /// The consumer group id (default `sluice-delivery-<name>`).
    pub consumer_group_id: Option<String>,
}

/// BufferingHints as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferingHintsConfig {
    /// SizeInMBs: 1 to 128 (default 5).
    pub size_in_mbs: Option<i64>,
    /// IntervalInSeconds: 0 to 900 (default 300).
    pub interval_in_seconds: Option<i64>,
}

/// DataFormatConversionConfiguration as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatConversionConfig {
    /// The output format: `PARQUET`.
    pub output_format: Option<String>,
    /// ParquetSerDe.Compression: SNAPPY (default), GZIP or UNCOMPRESSED.
    pub compression: Option<String>,
    /// The schema's columns, in order.
    pub columns: Vec<ColumnConfig>,
}

/// One column as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnConfig {
    /// The column name, the JSON field it reads.
    pub name: String,
    /// Its Glue/Hive type.
    #[serde(rename = "type")]
    pub kind: String,
}

/// Where a stream's records come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A topic.
    Topic(String),
    /// The Firehose API, through a backing topic.
    DirectPut {
        /// The backing topic.
        topic: String,
        /// Its partitions, when sluice creates it.
        partitions: i32,
    },
}

impl Source {
    /// The topic the stream consumes.
    pub fn topic(&self) -> &str {
        match self {
            Source::Topic(topic) | Source::DirectPut { topic, .. } => topic,
        }
    }
}

/// A validated delivery stream.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryStream {
    /// The name.
    pub name: String,
    /// The stream's version in object names; Firehose starts at 1.
    pub version: u32,
    /// Where records come from.
    pub source: Source,
    /// The destination URL as written, or `None` for the default folder.
    pub destination_url: Option<String>,
    /// object_store options for the destination.
    pub destination_options: std::collections::BTreeMap<String, String>,
    /// The custom prefix, if any.
    pub prefix: Option<Template>,
    /// The custom error prefix, if any.
    pub error_output_prefix: Option<Template>,
    /// A round is published once any of its objects holds this many record bytes.
    pub buffer_bytes: u64,
    /// ... or once its first record has waited this long.
    pub interval: Duration,
    /// The compression of data objects.
    pub compression: Compression,
    /// The objects' extension.
    pub file_extension: String,
    /// A newline after each record.
    pub append_delimiter: bool,
    /// The dynamic-partitioning query, when enabled.
    pub partitioning: Option<Query>,
    /// The Parquet schema, when converting.
    pub conversion: Option<Arc<Schema>>,
    /// The consumer group.
    pub consumer_group_id: String,
}

impl DeliveryStreamConfig {
    /// Checks every setting.
    pub fn validate(&self) -> Result<DeliveryStream> {
        let name = self.name.clone();
        check_name(&name)?;
        let invalid = |setting: &str, value: &str, reason: &str| Error::InvalidConfig {
            stream: name.clone(),
            setting: setting.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let source = self.source(&invalid)?;
        if let Some(url) = &self.destination_url {
            let known = ["file://", "s3://", "s3a://", "gs://", "az://", "abfs://", "memory://"];
            if !known.iter().any(|scheme| url.starts_with(scheme)) {
                let reason = "use file:///absolute/path or s3://bucket/prefix";
                return Err(invalid("destination_url", url, reason));
            }
        }
        let hints = self.buffering_hints.clone().unwrap_or_default();
        let size = hints.size_in_mbs.unwrap_or(SIZE_IN_MBS_DEFAULT as i64);
        if !(SIZE_IN_MBS_MIN as i64..=SIZE_IN_MBS_MAX as i64).contains(&size) {
            let reason = "use 1 to 128 (Firehose's SizeInMBs)";
            return Err(invalid("buffering_hints.size_in_mbs", &size.to_string(), reason));
        }
        let interval = hints.interval_in_seconds.unwrap_or(INTERVAL_SECS_DEFAULT as i64);
        if !(0..=INTERVAL_SECS_MAX as i64).contains(&interval) {
            let reason = "use 0 to 900 (Firehose's IntervalInSeconds)";
            return Err(invalid(
                "buffering_hints.interval_in_seconds",
                &interval.to_string(),
                reason,
            ));
        }
        let compression_name = self.compression_format.as_deref().unwrap_or("GZIP");
        let compression = Compression::parse(compression_name).ok_or_else(|| {
            let reason = "use UNCOMPRESSED, GZIP, ZIP, Snappy or HADOOP_SNAPPY";
            invalid("compression_format", compression_name, reason)
        })?;
        let conversion = self.conversion(&invalid)?;
        if conversion.is_some() && compression != Compression::Uncompressed {
            let reason = "with record_format_conversion, set compression_format = \
                \"UNCOMPRESSED\" (Parquet compresses itself; Firehose has the same rule)";
            return Err(invalid("compression_format", compression_name, reason));
        }
        let (prefix, error_output_prefix, partitioning) = self.prefixes(&invalid)?;
        let default_extension =
            if conversion.is_some() { ".parquet" } else { compression.extension() };
        let file_extension = match &self.file_extension {
            None => default_extension.to_string(),
            Some(ext) if ext.is_empty() => String::new(),
            Some(ext) if ext.starts_with('.') && ext.len() <= 128 && !ext.contains('/') => {
                ext.clone()
            }
            Some(ext) => return Err(invalid("file_extension", ext, "start it with '.', no '/'")),
        };
        let consumer_group_id = match &self.consumer_group_id {
            Some(id) if id.is_empty() => {
                return Err(invalid("consumer_group_id", "\"\"", "omit it or name a group"))
            }
            Some(id) => id.clone(),
            None => format!("sluice-delivery-{name}"),
        };
        Ok(DeliveryStream {
            name: name.clone(),
            version: 1,
            source,
            destination_url: self.destination_url.clone(),
            destination_options: self.destination_options.clone(),
            prefix,
            error_output_prefix,
            buffer_bytes: size as u64 * 1024 * 1024,
            interval: Duration::from_secs(interval as u64),
            compression,
            file_extension,
            append_delimiter: self.append_delimiter_to_record.unwrap_or(false),
            partitioning,
            conversion,
            consumer_group_id,
        })
    }

    fn source(&self, invalid: &dyn Fn(&str, &str, &str) -> Error) -> Result<Source> {
        match (&self.source_topic, &self.backing_topic) {
            (Some(_), Some(backing)) => Err(invalid(
                "backing_topic",
                backing,
                "a stream reads source_topic or the Firehose API's backing topic, not both",
            )),
            (Some(topic), None) if topic.is_empty() => {
                Err(invalid("source_topic", "\"\"", "name a topic"))
            }
            (Some(topic), None) => Ok(Source::Topic(topic.clone())),
            (None, backing) => {
                let topic =
                    backing.clone().unwrap_or_else(|| format!("sluice-firehose-{}", self.name));
                let partitions = self.backing_topic_partitions.unwrap_or(1);
                let partitions = i32::try_from(partitions)
                    .ok()
                    .filter(|p| (1..=1000).contains(p))
                    .ok_or_else(|| {
                        invalid(
                            "backing_topic_partitions",
                            &partitions.to_string(),
                            "use 1 to 1000",
                        )
                    })?;
                Ok(Source::DirectPut { topic, partitions })
            }
        }
    }

    fn conversion(
        &self,
        invalid: &dyn Fn(&str, &str, &str) -> Error,
    ) -> Result<Option<Arc<Schema>>> {
        let Some(conversion) = &self.record_format_conversion else { return Ok(None) };
        let format = conversion.output_format.as_deref().unwrap_or("PARQUET");
        if !format.eq_ignore_ascii_case("PARQUET") {
            let reason = "the output format is PARQUET (ORC is not supported)";
            return Err(invalid("record_format_conversion.output_format", format, reason));
        }
        let compression_name = conversion.compression.as_deref().unwrap_or("SNAPPY");
        let compression = match compression_name {
            "SNAPPY" => parquet::basic::Compression::SNAPPY,
            "GZIP" => parquet::basic::Compression::GZIP(Default::default()),
            "UNCOMPRESSED" => parquet::basic::Compression::UNCOMPRESSED,
            other => {
                let reason = "use SNAPPY, GZIP or UNCOMPRESSED (ParquetSerDe's Compression)";
                return Err(invalid("record_format_conversion.compression", other, reason));
            }
        };
        if conversion.columns.is_empty() || conversion.columns.len() > SCHEMA_COLUMNS_MAX {
            let count = conversion.columns.len().to_string();
            return Err(invalid(
                "record_format_conversion.columns",
                &count,
                "declare 1 to 1000 columns",
            ));
        }
        let mut columns = Vec::with_capacity(conversion.columns.len());
        for column in &conversion.columns {
            let kind = ColumnType::parse(&column.kind).ok_or_else(|| {
                let reason = "use string, int, bigint, float, double, boolean or timestamp";
                invalid(
                    &format!("record_format_conversion.columns.{}.type", column.name),
                    &column.kind,
                    reason,
                )
            })?;
            if column.name.is_empty() || columns.iter().any(|(name, _)| name == &column.name) {
                let reason = "column names are non-empty and unique";
                return Err(invalid("record_format_conversion.columns", &column.name, reason));
            }
            columns.push((column.name.clone(), kind));
        }
        Ok(Some(Arc::new(Schema { columns, compression })))
    }

    #[allow(clippy::type_complexity)]
    fn prefixes(
        &self,
        invalid: &dyn Fn(&str, &str, &str) -> Error,
    ) -> Result<(Option<Template>, Option<Template>, Option<Query>)> {
        let parse = |setting: &str, text: &Option<String>, kind| match text {
            None => Ok(None),
            Some(text) if text.len() > PREFIX_BYTES_MAX => {
                Err(invalid(setting, text, "a prefix is at most 1024 bytes"))
            }
            Some(text) => Template::parse(text, kind)
                .map(Some)
                .map_err(|reason| invalid(setting, text, &reason)),
        };
        let prefix = parse("prefix", &self.prefix, PrefixKind::Data)?;
        let error_output_prefix =
            parse("error_output_prefix", &self.error_output_prefix, PrefixKind::Error)?;
        let enabled = self.dynamic_partitioning.unwrap_or(false);
        let partitioning = match (&self.metadata_extraction_query, enabled) {
            (Some(query), true) => Some(
                Query::parse(query)
                    .map_err(|reason| invalid("metadata_extraction_query", query, &reason))?,
            ),
            (None, true) => {
                let reason =
                    "dynamic partitioning needs metadata_extraction_query = \"{key: .field}\"";
                return Err(invalid("dynamic_partitioning", "true", reason));
            }
            (Some(query), false) => {
                return Err(invalid(
                    "metadata_extraction_query",
                    query,
                    "set dynamic_partitioning = true",
                ))
            }
            (None, false) => None,
        };
        if let (Some(prefix), None) = (&prefix, &error_output_prefix) {
            if prefix.has_expressions() {
                let reason = "a prefix with !{...} expressions needs an error_output_prefix \
                    (as in Firehose), such as \"errors/!{firehose:error-output-type}/\"";
                return Err(invalid("error_output_prefix", "", reason));
            }
        }
        if let Some(error) = &error_output_prefix {
            if error.has_expressions() && !error.has_error_output_type() {
                let reason = "an error prefix with expressions must include \
                    !{firehose:error-output-type} (as in Firehose)";
                return Err(invalid(
                    "error_output_prefix",
                    self.error_output_prefix.as_deref().unwrap_or(""),
                    reason,
                ));
            }
        }
        let used: Vec<&str> = prefix.iter().flat_map(|p| p.partition_keys()).collect();
        match &partitioning {
            Some(query) => {
                if used.is_empty() {
                    let reason = "with dynamic partitioning, use !{partitionKeyFromQuery:<key>} in the prefix";
                    return Err(invalid("prefix", self.prefix.as_deref().unwrap_or(""), reason));
                }
                if let Some(unknown) =
                    used.iter().find(|key| !query.names().any(|name| &name == *key))
                {
                    let reason = format!("metadata_extraction_query has no key {unknown}");
                    return Err(invalid("prefix", self.prefix.as_deref().unwrap_or(""), &reason));
                }
                if error_output_prefix.is_none() {
                    let reason =
                        "dynamic partitioning needs an error_output_prefix (as in Firehose)";
                    return Err(invalid("error_output_prefix", "", reason));
                }
            }
            None if !used.is_empty() => {
                let reason = "!{partitionKeyFromQuery:...} needs dynamic_partitioning = true";
                return Err(invalid("prefix", self.prefix.as_deref().unwrap_or(""), reason));
            }
            None => {}
        }
        Ok((prefix, error_output_prefix, partitioning))
    }
}

fn check_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= STREAM_NAME_BYTES_MAX
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if valid {
        return Ok(());
    }
    Err(Error::InvalidConfig {
        stream: name.to_string(),
        setting: "name".into(),
        value: format!("{name:?}"),
        reason: "use 1 to 64 letters, digits, '_', '.' and '-' (Firehose's DeliveryStreamName)"
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(text: &str) -> Result<DeliveryStream> {
        let config: DeliveryStreamConfig = toml::from_str(text).unwrap();
        config.validate()
    }

    fn message(text: &str) -> String {
        validate(text).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_firehoses() {
        let stream = validate("name = \"s\"\nsource_topic = \"t\"").unwrap();
        assert_eq!(stream.buffer_bytes, 5 * 1024 * 1024);
        assert_eq!(stream.interval, Duration::from_secs(300));
        assert_eq!(stream.compression, Compression::Gzip);
        assert_eq!(stream.file_extension, ".gz");
        assert_eq!(stream.consumer_group_id, "sluice-delivery-s");
        assert!(!stream.append_delimiter);
        let direct = validate("name = \"s\"").unwrap();
        assert_eq!(
            direct.source,
            Source::DirectPut { topic: "sluice-firehose-s".into(), partitions: 1 }
        );
    }

    #[test]
    fn errors_name_the_setting_and_the_fix() {
        for (text, needle) in [
            ("name = \"a b\"", "DeliveryStreamName"),
            ("name = \"s\"\nbuffering_hints = { size_in_mbs = 129 }", "SizeInMBs"),
            ("name = \"s\"\nbuffering_hints = { interval_in_seconds = 901 }", "IntervalInSeconds"),
            ("name = \"s\"\ncompression_format = \"gzip\"", "use UNCOMPRESSED"),
            ("name = \"s\"\ndestination_url = \"/tmp/x\"", "file:///"),
            ("name = \"s\"\nprefix = \"!{partitionKeyFromQuery:k}\"\nerror_output_prefix = \"e/\"", "dynamic_partitioning = true"),
            ("name = \"s\"\nprefix = \"!{timestamp:yyyy}/\"", "needs an error_output_prefix"),
            ("name = \"s\"\nerror_output_prefix = \"e/!{timestamp:yyyy}/\"", "must include"),
            ("name = \"s\"\ndynamic_partitioning = true", "metadata_extraction_query"),
            (
                "name = \"s\"\ndynamic_partitioning = true\nmetadata_extraction_query = \"{k: .k}\"\nprefix = \"!{partitionKeyFromQuery:j}/\"\nerror_output_prefix = \"e/\"",
                "no key j",
            ),
            (
                "name = \"s\"\nrecord_format_conversion = { columns = [{ name = \"a\", type = \"int\" }] }",
                "UNCOMPRESSED",
            ),
            (
                "name = \"s\"\ncompression_format = \"UNCOMPRESSED\"\nrecord_format_conversion = { columns = [{ name = \"a\", type = \"int64\" }] }",
                "bigint",
            ),
        ] {
            let error = message(text);
            assert!(error.contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn parquet_objects_end_in_parquet() {
        let stream = validate(
            "name = \"s\"\ncompression_format = \"UNCOMPRESSED\"\nrecord_format_conversion = { columns = [{ name = \"a\", type = \"int\" }] }",
        )
        .unwrap();
        assert_eq!(stream.file_extension, ".parquet");
        assert!(stream.conversion.is_some());
    }
}
