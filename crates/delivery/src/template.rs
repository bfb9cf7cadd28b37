//! Object keys: Firehose's default key and custom prefixes with `!{namespace:value}`
//! expressions.
//!
//! A key is `<prefix><file name>`. Without a custom prefix the prefix is Firehose's
//! `YYYY/MM/dd/HH/`; the file name is always Firehose's
//! `<stream>-<version>-<yyyy>-<MM>-<dd>-<HH>-<mm>-<ss>-<id>` plus the compression's
//! extension. A custom prefix without a timestamp expression gets `yyyy/MM/dd/HH/` appended
//! (unless dynamic partitioning is on); the default error prefix is
//! `<prefix><error-output-type>/yyyy/MM/dd/HH/`, both as in Firehose. Expressions:
//! - `!{timestamp:<pattern>}`: a Java `DateTimeFormatter` pattern (`yyyy`, `MM`, `dd`, `HH`,
//!   `mm`, `ss`, `SSS`, quoted text) over the object's timestamp, in UTC;
//! - `!{firehose:random-string}`: 11 characters of `[0-9a-z]`;
//! - `!{firehose:error-output-type}`: only in the error prefix;
//! - `!{partitionKeyFromQuery:<key>}`: a value extracted by the metadata extraction query.
//!
//! **Determinism.** Everything a key is made of comes from the object's records: the
//! timestamp is the arrival time (Kafka timestamp) of its first record, and the id and the
//! "random" string are hashes of the source partition and the first record's offset. A
//! re-published object therefore lands under the same key, which is how a crash between
//! publishing and committing does not duplicate data (see `docs/design/delivery.md`).
use chrono::{DateTime, Datelike, Timelike, Utc};

/// One piece of a timestamp pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TimePart {
    Year4,
    Year2,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Millis,
    Literal(String),
}

/// One piece of a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Timestamp(Vec<TimePart>),
    RandomString,
    ErrorOutputType,
    PartitionKey(String),
}

/// Which prefix a template is, for the expressions each allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixKind {
    /// `prefix`: where delivered records go.
    Data,
    /// `error_output_prefix`: where failed records go.
    Error,
}

/// A parsed prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    text: String,
}

/// What an object's key is made of.
#[derive(Debug, Clone, Copy)]
pub struct KeyContext<'a> {
    /// The arrival time of the object's first record.
    pub timestamp: DateTime<Utc>,
    /// The object's deterministic id (a UUID's text).
    pub id: &'a str,
    /// `!{firehose:error-output-type}`, for error objects.
    pub error_output_type: Option<&'a str>,
    /// The record's partition keys, by name.
    pub partition_keys: &'a [(String, String)],
}

impl Template {
    /// Parses a prefix, or says what is wrong with it.
    pub fn parse(text: &str, kind: PrefixKind) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("!{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| format!("unclosed `!{{` in {text:?}"))?;
            parts.push(expression(&after[..end], kind)?);
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template { parts, text: text.to_string() })
    }

    /// The prefix as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The partition keys this template names, in order.
    pub fn partition_keys(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::PartitionKey(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// Whether the template has any expression.
    pub fn has_expressions(&self) -> bool {
        self.parts.iter().any(|part| !matches!(part, Part::Literal(_)))
    }

    /// Whether the template has a `!{timestamp:...}` expression; Firehose appends
    /// `yyyy/MM/dd/HH/` to a prefix without one.
    pub fn has_timestamp(&self) -> bool {
        self.parts.iter().any(|part| matches!(part, Part::Timestamp(_)))
    }

    /// Whether the template has `!{firehose:error-output-type}`.
    pub fn has_error_output_type(&self) -> bool {
        self.parts.iter().any(|part| matches!(part, Part::ErrorOutputType))
    }

    /// The prefix for one object.
    pub fn render(&self, context: &KeyContext<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Timestamp(pattern) => format_time(&mut out, pattern, context.timestamp),
                Part::RandomString => out.push_str(&random_string(context.id)),
                Part::ErrorOutputType => out.push_str(context.error_output_type.unwrap_or("")),
                Part::PartitionKey(name) => {
                    let value = context.partition_keys.iter().find(|(key, _)| key == name);
                    out.push_str(value.map_or("", |(_, value)| value.as_str()));
                }
            }
        }
        out
    }
}

fn expression(inner: &str, kind: PrefixKind) -> Result<Part, String> {
    let (namespace, value) = inner
        .split_once(':')
        .ok_or_else(|| format!("`!{{{inner}}}` needs a namespace, like `!{{timestamp:yyyy}}`"))?;
    match (namespace, value) {
        ("timestamp", pattern) => Ok(Part::Timestamp(parse_time_pattern(pattern)?)),
        ("firehose", "random-string") => Ok(Part::RandomString),
        ("firehose", "error-output-type") if kind == PrefixKind::Error => Ok(Part::ErrorOutputType),
        ("firehose", "error-output-type") => {
            Err("`!{firehose:error-output-type}` is allowed only in error_output_prefix".into())
        }
        ("partitionKeyFromQuery", name) if kind == PrefixKind::Data && !name.is_empty() => {
            Ok(Part::PartitionKey(name.to_string()))
        }
        ("partitionKeyFromQuery", _) => {
            Err("`!{partitionKeyFromQuery:<key>}` is allowed only in prefix".into())
        }
        _ => Err(format!(
            "unknown expression `!{{{inner}}}`; use timestamp:<pattern>, \
             firehose:random-string, firehose:error-output-type or partitionKeyFromQuery:<key>"
        )),
    }
}

fn parse_time_pattern(pattern: &str) -> Result<Vec<TimePart>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut parts = Vec::new();
    let mut index = 0;
    while let Some(&c) = chars.get(index) {
        let run = chars[index..].iter().take_while(|&&d| d == c).count();
        let part = match (c, run) {
            ('y', 4) => TimePart::Year4,
            ('y', 2) => TimePart::Year2,
            ('M', 2) => TimePart::Month,
            ('d', 2) => TimePart::Day,
            ('H', 2) => TimePart::Hour,
            ('m', 2) => TimePart::Minute,
            ('s', 2) => TimePart::Second,
            ('S', 3) => TimePart::Millis,
            ('\'', _) => {
                let close = chars[index + 1..]
                    .iter()
                    .position(|&d| d == '\'')
                    .ok_or_else(|| format!("unclosed quote in timestamp pattern {pattern:?}"))?;
                let text: String = chars[index + 1..index + 1 + close].iter().collect();
                index += close + 2;
                parts.push(TimePart::Literal(text));
                continue;
            }
            (c, _) if c.is_ascii_alphabetic() => {
                return Err(format!(
                    "timestamp pattern {pattern:?}: {:?} is not supported; use yyyy, yy, MM, \
                     dd, HH, mm, ss, SSS and 'quoted text'",
                    chars[index..index + run].iter().collect::<String>()
                ))
            }
            (c, _) => TimePart::Literal(std::iter::repeat_n(c, run).collect()),
        };
        parts.push(part);
        index += run;
    }
    Ok(parts)
}

fn format_time(out: &mut String, pattern: &[TimePart], time: DateTime<Utc>) {
    use std::fmt::Write;
    for part in pattern {
        let _ = match part {
            TimePart::Year4 => write!(out, "{:04}", time.year()),
            TimePart::Year2 => write!(out, "{:02}", time.year().rem_euclid(100)),
            TimePart::Month => write!(out, "{:02}", time.month()),
            TimePart::Day => write!(out, "{:02}", time.day()),
            TimePart::Hour => write!(out, "{:02}", time.hour()),
            TimePart::Minute => write!(out, "{:02}", time.minute()),
            TimePart::Second => write!(out, "{:02}", time.second()),
            TimePart::Millis => write!(out, "{:03}", time.timestamp_subsec_millis()),
            TimePart::Literal(text) => write!(out, "{text}"),
        };
    }
}

/// Firehose's default prefix: `YYYY/MM/dd/HH/` in UTC.
pub fn default_prefix(time: DateTime<Utc>) -> String {
    time.format("%Y/%m/%d/%H/").to_string()
}

/// Firehose's file name: `<stream>-<version>-<yyyy>-<MM>-<dd>-<HH>-<mm>-<ss>-<id><ext>`.
pub fn file_name(stream: &str, version: u32, time: DateTime<Utc>, id: &str, ext: &str) -> String {
    format!("{stream}-{version}-{}-{id}{ext}", time.format("%Y-%m-%d-%H-%M-%S"))
}

/// The object id: a name-based UUID (v5) of the stream, source partition and first offset,
/// so the same records always make the same key.
pub fn object_id(
    stream: &str,
    topic: &str,
    partition: i32,
    first_offset: i64,
    kind: &str,
) -> String {
    let name = format!("{stream}/{topic}/{partition}/{first_offset}/{kind}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()).to_string()
}

/// `!{firehose:random-string}`: 11 characters of `[0-9a-z]` derived from the object id, so
/// a re-published object keeps its key.
fn random_string(id: &str) -> String {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    // FNV-1a: deterministic and well spread; not a security boundary.
    let mut hash = id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    (0..11)
        .map(|_| {
            let c = ALPHABET[(hash % 36) as usize];
            hash /= 36;
            if hash == 0 {
                hash = 0x9e37_79b9_7f4a_7c15;
            }
            char::from(c)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn time() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 7, 9, 5, 4).unwrap() + chrono::Duration::milliseconds(42)
    }

    fn context<'a>(keys: &'a [(String, String)]) -> KeyContext<'a> {
        KeyContext {
            timestamp: time(),
            id: "id-1",
            error_output_type: Some("format-conversion-failed"),
            partition_keys: keys,
        }
    }

    #[test]
    fn renders_the_seeds_hive_style_prefix() {
        let template = Template::parse(
            "data/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/",
            PrefixKind::Data,
        )
        .unwrap();
        assert_eq!(template.render(&context(&[])), "data/year=2026/month=03/day=07/hour=09/");
    }

    #[test]
    fn renders_every_expression() {
        let keys = vec![("customer".to_string(), "c-9".to_string())];
        let data = Template::parse(
            "x/!{partitionKeyFromQuery:customer}/!{timestamp:yy-MM-dd'T'HH:mm:ss.SSS}/!{firehose:random-string}/",
            PrefixKind::Data,
        )
        .unwrap();
        let rendered = data.render(&context(&keys));
        assert!(rendered.starts_with("x/c-9/26-03-07T09:05:04.042/"), "{rendered}");
        let random = rendered.trim_end_matches('/').rsplit('/').next().unwrap();
        assert_eq!(random.len(), 11);
        assert!(random.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()));
        assert_eq!(data.render(&context(&keys)), rendered, "deterministic");
        let error =
            Template::parse("errors/!{firehose:error-output-type}/", PrefixKind::Error).unwrap();
        assert_eq!(error.render(&context(&[])), "errors/format-conversion-failed/");
        assert_eq!(data.partition_keys().collect::<Vec<_>>(), ["customer"]);
    }

    #[test]
    fn rejects_bad_expressions_with_the_fix() {
        for (text, kind, needle) in [
            ("a/!{timestamp:yyyy", PrefixKind::Data, "unclosed"),
            ("!{firehose:error-output-type}", PrefixKind::Data, "only in error_output_prefix"),
            ("!{partitionKeyFromQuery:k}", PrefixKind::Error, "only in prefix"),
            ("!{timestamp:YYYY}", PrefixKind::Data, "not supported"),
            ("!{nope:x}", PrefixKind::Data, "unknown expression"),
            ("!{plain}", PrefixKind::Data, "namespace"),
        ] {
            let error = Template::parse(text, kind).unwrap_err();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn default_key_is_firehoses() {
        assert_eq!(default_prefix(time()), "2026/03/07/09/");
        let id = object_id("s", "t", 0, 5, "data");
        assert_eq!(id, object_id("s", "t", 0, 5, "data"));
        assert_ne!(id, object_id("s", "t", 0, 6, "data"));
        assert_eq!(
            file_name("orders", 1, time(), &id, ".gz"),
            format!("orders-1-2026-03-07-09-05-04-{id}.gz")
        );
    }
}
