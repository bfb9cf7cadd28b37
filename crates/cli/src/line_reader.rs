//! Turning console-producer input lines into records, exactly like Kafka's
//! `LineMessageReader` (kafka-console-producer.sh `--property` settings).
//!
//! A line is `[HEADERS<headers.delimiter>][KEY<key.separator>]VALUE`. Headers are
//! `k:v` pairs split on `headers.separator`; each pair splits at its first
//! `headers.key.separator`. A key, value or header value equal to `null.marker` becomes
//! null; a header key may not be the null marker. Without `ignore.error=true` a missing
//! separator is an error naming the line number.
use anyhow::{bail, Result};

use crate::properties::Properties;

/// One parsed record. `None` is a null key, value or header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRecord {
    /// The record key.
    pub key: Option<Vec<u8>>,
    /// The record value.
    pub value: Option<Vec<u8>>,
    /// Headers in line order; keys may repeat.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// The reader's settings, from `--property` flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineReader {
    parse_key: bool,
    key_separator: String,
    parse_headers: bool,
    headers_delimiter: String,
    headers_separator: String,
    headers_key_separator: String,
    ignore_error: bool,
    null_marker: Option<String>,
}

impl LineReader {
    /// Reads the settings. Unknown properties (`key.serializer`, typos) only warn, because
    /// kafka-console-producer ignores them too and commands must translate 1:1.
    pub fn from_properties(properties: &Properties) -> Result<LineReader> {
        let mut reader = LineReader {
            parse_key: false,
            key_separator: "\t".into(),
            parse_headers: false,
            headers_delimiter: "\t".into(),
            headers_separator: ",".into(),
            headers_key_separator: ":".into(),
            ignore_error: false,
            null_marker: None,
        };
        for (key, value) in properties {
            match key.as_str() {
                "parse.key" => reader.parse_key = parse_bool(value),
                "key.separator" => reader.key_separator = value.clone(),
                "parse.headers" => reader.parse_headers = parse_bool(value),
                "headers.delimiter" => reader.headers_delimiter = value.clone(),
                "headers.separator" => reader.headers_separator = value.clone(),
                "headers.key.separator" => reader.headers_key_separator = value.clone(),
                "ignore.error" => reader.ignore_error = parse_bool(value),
                "null.marker" => reader.null_marker = Some(value.clone()),
                _ => tracing::warn!(
                    key = %key,
                    "ignoring unknown --property; the console producer reads parse.key, \
                     key.separator, parse.headers, headers.delimiter, headers.separator, \
                     headers.key.separator, ignore.error and null.marker"
                ),
            }
        }
        reader.check()?;
        Ok(reader)
    }

    fn check(&self) -> Result<()> {
        for (name, separator) in [
            ("key.separator", &self.key_separator),
            ("headers.delimiter", &self.headers_delimiter),
            ("headers.separator", &self.headers_separator),
            ("headers.key.separator", &self.headers_key_separator),
        ] {
            if separator.is_empty() {
                bail!("--property {name} must not be empty");
            }
        }
        if self.parse_headers && self.headers_delimiter == self.headers_separator {
            bail!("headers.delimiter and headers.separator may not be equal");
        }
        if self.parse_headers && self.headers_separator == self.headers_key_separator {
            bail!("headers.separator and headers.key.separator may not be equal");
        }
        Ok(())
    }

    /// Whether lines need parsing at all (then they must be UTF-8).
    pub fn parses(&self) -> bool {
        self.parse_key || self.parse_headers || self.null_marker.is_some()
    }

    /// Parses one line (without its line terminator). `line_number` is 1-based.
    pub fn read(&self, line: &str, line_number: u64) -> Result<LineRecord> {
        let headers = self.split_off(self.parse_headers, line, 0, &self.headers_delimiter);
        let headers = self.required(headers, "headers delimiter", line, line_number)?;
        let header_bytes = headers.map_or(0, |h| h.len() + self.headers_delimiter.len());
        let key = self.split_off(self.parse_key, line, header_bytes, &self.key_separator);
        let key = self.required(key, "key separator", line, line_number)?;
        let key_bytes = key.map_or(0, |k| k.len() + self.key_separator.len());
        let value = &line[header_bytes + key_bytes..];
        let headers = match headers {
            Some(text) if !self.is_null(text) => self.split_headers(text, line_number)?,
            _ => Vec::new(),
        };
        Ok(LineRecord { key: key.and_then(|k| self.bytes(k)), value: self.bytes(value), headers })
    }

    /// The text from `start` to the next `separator`, when `enabled`; `Some(None)` when the
    /// separator is missing.
    fn split_off<'a>(
        &self,
        enabled: bool,
        line: &'a str,
        start: usize,
        separator: &str,
    ) -> Option<Option<&'a str>> {
        if !enabled {
            return None;
        }
        let rest = line.get(start..).unwrap_or_default();
        Some(rest.find(separator).map(|end| &rest[..end]))
    }

    fn required<'a>(
        &self,
        part: Option<Option<&'a str>>,
        name: &str,
        line: &str,
        line_number: u64,
    ) -> Result<Option<&'a str>> {
        match part {
            None => Ok(None),
            Some(Some(text)) => Ok(Some(text)),
            Some(None) if self.ignore_error => Ok(None),
            Some(None) => bail!("No {name} found on line number {line_number}: '{line}'"),
        }
    }

    fn split_headers(
        &self,
        text: &str,
        line_number: u64,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>> {
        let mut headers = Vec::new();
        for pair in text.split(self.headers_separator.as_str()) {
            let Some((key, value)) = pair.split_once(self.headers_key_separator.as_str()) else {
                if self.ignore_error {
                    headers.push((pair.to_string(), None));
                    continue;
                }
                bail!(
                    "No header key separator found in pair '{pair}' on line number {line_number}"
                );
            };
            if self.is_null(key) {
                bail!(
                    "Header keys should not be equal to the null marker '{key}' as they can't \
                     be null"
                );
            }
            headers.push((key.to_string(), self.bytes(value)));
        }
        Ok(headers)
    }

    fn is_null(&self, text: &str) -> bool {
        self.null_marker.as_deref() == Some(text)
    }

    fn bytes(&self, text: &str) -> Option<Vec<u8>> {
        (!self.is_null(text)).then(|| text.as_bytes().to_vec())
    }
}

/// Java's `Boolean.parseBoolean`: "true" in any case is true, everything else false.
fn parse_bool(value: &str) -> bool {
    value.trim().eq_ignore_ascii_case("true")
}

/// Strips one `\n` or `\r\n` terminator, like Java's `BufferedReader.readLine`.
pub fn strip_terminator(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(pairs: &[(&str, &str)]) -> LineReader {
        let properties = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        LineReader::from_properties(&properties).unwrap()
    }

    fn some(text: &str) -> Option<Vec<u8>> {
        Some(text.as_bytes().to_vec())
    }

    #[test]
    fn reads_plain_lines_as_values() {
        let record = reader(&[]).read("hello\tworld", 1).unwrap();
        assert_eq!(record, LineRecord { key: None, value: some("hello\tworld"), headers: vec![] });
    }

    #[test]
    fn splits_keys_at_the_first_separator() {
        let record = reader(&[("parse.key", "true")]).read("k\tv\tw", 1).unwrap();
        assert_eq!(record.key, some("k"));
        assert_eq!(record.value, some("v\tw"));
        let custom = reader(&[("parse.key", "true"), ("key.separator", "::")]);
        let record = custom.read("user-1::{\"a\":1}", 1).unwrap();
        assert_eq!(record.key, some("user-1"));
        assert_eq!(record.value, some("{\"a\":1}"));
    }

    #[test]
    fn reports_a_missing_key_separator_with_the_line_number() {
        let error = reader(&[("parse.key", "true")]).read("novalue", 7).unwrap_err();
        assert_eq!(error.to_string(), "No key separator found on line number 7: 'novalue'");
        let lenient = reader(&[("parse.key", "true"), ("ignore.error", "true")]);
        let record = lenient.read("novalue", 7).unwrap();
        assert_eq!((record.key, record.value), (None, some("novalue")));
    }

    #[test]
    fn parses_headers_then_key_then_value() {
        let both = reader(&[("parse.headers", "true"), ("parse.key", "true")]);
        let record = both.read("h1:v1,h2:v2\tkey\tvalue", 1).unwrap();
        assert_eq!(record.key, some("key"));
        assert_eq!(record.value, some("value"));
        assert_eq!(record.headers, vec![("h1".into(), some("v1")), ("h2".into(), some("v2"))]);
    }

    #[test]
    fn splits_header_pairs_at_their_first_key_separator() {
        let record = reader(&[("parse.headers", "true")]).read("url:http://x\tv", 1).unwrap();
        assert_eq!(record.headers, vec![("url".into(), some("http://x"))]);
    }

    #[test]
    fn rejects_a_header_without_key_separator() {
        let error = reader(&[("parse.headers", "true")]).read("bad\tv", 3).unwrap_err();
        assert!(error.to_string().contains("'bad' on line number 3"), "{error}");
    }

    #[test]
    fn maps_the_null_marker_to_null() {
        let null = reader(&[("parse.key", "true"), ("null.marker", "<null>")]);
        let record = null.read("<null>\t<null>", 1).unwrap();
        assert_eq!((record.key, record.value), (None, None));
        let headers = reader(&[("parse.headers", "true"), ("null.marker", "N")]);
        assert_eq!(headers.read("h:N\tv", 1).unwrap().headers, vec![("h".into(), None)]);
        assert!(headers.read("N:x\tv", 1).is_err());
    }

    #[test]
    fn ignores_unknown_properties() {
        let properties = [("key.serializer".to_string(), "x".to_string())].into();
        assert_eq!(LineReader::from_properties(&properties).unwrap(), reader(&[]));
    }

    #[test]
    fn rejects_empty_separators() {
        let properties = [("key.separator".to_string(), String::new())].into();
        assert!(LineReader::from_properties(&properties).is_err());
    }

    #[test]
    fn strips_unix_and_windows_terminators() {
        assert_eq!(strip_terminator(b"a\r\n"), b"a");
        assert_eq!(strip_terminator(b"a\n"), b"a");
        assert_eq!(strip_terminator(b"a"), b"a");
    }
}
