//! Printing consumed records exactly like Kafka's `DefaultMessageFormatter`
//! (kafka-console-consumer.sh `--property` settings).
//!
//! Field order is fixed: timestamp, partition, offset, headers, key, value; fields are
//! joined by `key.separator` and each record ends with `line.separator`. Null keys, values
//! and header values print as `null.literal`. Bytes are written as they are, so binary
//! values pass through a pipe unchanged.
use std::io::{self, Write};

use rdkafka::message::{Headers, Message, Timestamp};

use crate::properties::Properties;

/// The formatter's settings, from `--property` flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFormatter {
    print_timestamp: bool,
    print_partition: bool,
    print_offset: bool,
    print_headers: bool,
    print_key: bool,
    print_value: bool,
    key_separator: Vec<u8>,
    line_separator: Vec<u8>,
    headers_separator: Vec<u8>,
    headers_key_separator: Vec<u8>,
    null_literal: Vec<u8>,
}

impl Default for MessageFormatter {
    fn default() -> MessageFormatter {
        MessageFormatter {
            print_timestamp: false,
            print_partition: false,
            print_offset: false,
            print_headers: false,
            print_key: false,
            print_value: true,
            key_separator: b"\t".to_vec(),
            line_separator: b"\n".to_vec(),
            headers_separator: b",".to_vec(),
            headers_key_separator: b":".to_vec(),
            null_literal: b"null".to_vec(),
        }
    }
}

impl MessageFormatter {
    /// Reads the settings. Unknown properties (deserializer classes) only warn, because
    /// kafka-console-consumer accepts them and commands must translate 1:1.
    pub fn from_properties(properties: &Properties) -> MessageFormatter {
        let mut formatter = MessageFormatter::default();
        for (key, value) in properties {
            let flag = value.trim().eq_ignore_ascii_case("true");
            let bytes = value.as_bytes().to_vec();
            match key.as_str() {
                "print.timestamp" => formatter.print_timestamp = flag,
                "print.partition" => formatter.print_partition = flag,
                "print.offset" => formatter.print_offset = flag,
                "print.headers" => formatter.print_headers = flag,
                "print.key" => formatter.print_key = flag,
                "print.value" => formatter.print_value = flag,
                "key.separator" => formatter.key_separator = bytes,
                "line.separator" => formatter.line_separator = bytes,
                "headers.separator" => formatter.headers_separator = bytes,
                "headers.key.separator" => formatter.headers_key_separator = bytes,
                "null.literal" => formatter.null_literal = bytes,
                _ => tracing::warn!(key = %key, "ignoring unknown --property"),
            }
        }
        formatter
    }

    /// Writes one record.
    pub fn write(&self, out: &mut impl Write, message: &impl Message) -> io::Result<()> {
        if self.print_timestamp {
            match message.timestamp() {
                Timestamp::CreateTime(ms) => write!(out, "CreateTime:{ms}")?,
                Timestamp::LogAppendTime(ms) => write!(out, "LogAppendTime:{ms}")?,
                Timestamp::NotAvailable => out.write_all(b"NO_TIMESTAMP")?,
            }
            self.separator(out, self.print_partition || self.print_offset || self.rest())?;
        }
        if self.print_partition {
            write!(out, "Partition:{}", message.partition())?;
            self.separator(out, self.print_offset || self.rest())?;
        }
        if self.print_offset {
            write!(out, "Offset:{}", message.offset())?;
            self.separator(out, self.rest())?;
        }
        if self.print_headers {
            self.write_headers(out, message)?;
            self.separator(out, self.print_key || self.print_value)?;
        }
        if self.print_key {
            self.nullable(out, message.key())?;
            self.separator(out, self.print_value)?;
        }
        if self.print_value {
            self.nullable(out, message.payload())?;
            out.write_all(&self.line_separator)?;
        }
        Ok(())
    }

    /// Whether any of headers, key or value follows.
    fn rest(&self) -> bool {
        self.print_headers || self.print_key || self.print_value
    }

    fn write_headers(&self, out: &mut impl Write, message: &impl Message) -> io::Result<()> {
        let Some(headers) = message.headers().filter(|headers| headers.count() > 0) else {
            return out.write_all(b"NO_HEADERS");
        };
        for (index, header) in headers.iter().enumerate() {
            if index > 0 {
                out.write_all(&self.headers_separator)?;
            }
            out.write_all(header.key.as_bytes())?;
            out.write_all(&self.headers_key_separator)?;
            self.nullable(out, header.value)?;
        }
        Ok(())
    }

    /// A column separator when more fields follow, else the line separator.
    fn separator(&self, out: &mut impl Write, more: bool) -> io::Result<()> {
        out.write_all(if more { &self.key_separator } else { &self.line_separator })
    }

    fn nullable(&self, out: &mut impl Write, bytes: Option<&[u8]>) -> io::Result<()> {
        out.write_all(bytes.unwrap_or(&self.null_literal))
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};

    use super::*;

    fn message(key: Option<&str>, headers: Option<OwnedHeaders>) -> OwnedMessage {
        OwnedMessage::new(
            Some(b"value".to_vec()),
            key.map(|key| key.as_bytes().to_vec()),
            "t".to_string(),
            Timestamp::CreateTime(1_700_000_000_000),
            2,
            41,
            headers,
        )
    }

    fn format(pairs: &[(&str, &str)], message: &OwnedMessage) -> String {
        let properties = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut out = Vec::new();
        MessageFormatter::from_properties(&properties).write(&mut out, message).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn prints_values_one_per_line_by_default() {
        assert_eq!(format(&[], &message(Some("k"), None)), "value\n");
    }

    #[test]
    fn prints_keys_with_null_literal() {
        let pairs = [("print.key", "true")];
        assert_eq!(format(&pairs, &message(Some("k"), None)), "k\tvalue\n");
        assert_eq!(format(&pairs, &message(None, None)), "null\tvalue\n");
        let custom = [("print.key", "true"), ("key.separator", " => ")];
        assert_eq!(format(&custom, &message(Some("k"), None)), "k => value\n");
    }

    #[test]
    fn prints_every_field_in_kafka_order() {
        let headers = OwnedHeaders::new()
            .insert(Header { key: "a", value: Some("1") })
            .insert(Header { key: "b", value: None::<&str> });
        let pairs = [
            ("print.timestamp", "true"),
            ("print.partition", "true"),
            ("print.offset", "true"),
            ("print.headers", "true"),
            ("print.key", "true"),
        ];
        assert_eq!(
            format(&pairs, &message(Some("k"), Some(headers))),
            "CreateTime:1700000000000\tPartition:2\tOffset:41\ta:1,b:null\tk\tvalue\n"
        );
    }

    #[test]
    fn prints_no_headers_marker() {
        let pairs = [("print.headers", "true")];
        assert_eq!(format(&pairs, &message(None, None)), "NO_HEADERS\tvalue\n");
    }

    #[test]
    fn ends_the_line_after_the_last_printed_field() {
        let pairs = [("print.value", "false"), ("print.offset", "true")];
        assert_eq!(format(&pairs, &message(None, None)), "Offset:41\n");
    }
}
