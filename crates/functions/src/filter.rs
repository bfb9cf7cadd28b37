//! FilterCriteria: Lambda's event filtering for Kafka sources, so only matching records
//! reach the function. Records filtered out are never invoked, and their offsets are
//! committed with their batch (Lambda does the same).
//!
//! A record passes when any filter matches. A filter is Lambda's pattern (EventBridge
//! syntax) over `{"key": ..., "value": ..., "topic": ..., "partition": ..., "offset": ...,
//! "headers": {...}}`, where `value` and `key` are the record's bytes parsed as JSON when they
//! are JSON and as a UTF-8 string otherwise:
//!
//! - `{"value": {"status": ["active", "pending"]}}`: exact values (strings, numbers, null);
//! - `{"prefix": "ab"}`, `{"suffix": ".png"}`, `{"equals-ignore-case": "ok"}`;
//! - `{"anything-but": ["a", "b"]}` (or one value, or `{"prefix": ...}`);
//! - `{"numeric": [">", 0, "<=", 100]}`;
//! - `{"exists": true}` / `{"exists": false}`;
//! - `{"$or": [pattern, pattern]}`.
//!
//! Every field of a pattern must match (and); within a field's list any matcher may match
//! (or); a list in the record matches when any element does.
use serde_json::{Map, Value};

use crate::limits::{FILTERS_MAX, FILTER_PATTERN_BYTES_MAX};

/// Compiled filters of one function.
#[derive(Debug, Clone, PartialEq)]
pub struct Filters {
    patterns: Vec<Map<String, Value>>,
}

impl Filters {
    /// Parses Lambda filter patterns (JSON text each); the error says which and why.
    pub fn parse(patterns: &[String]) -> Result<Filters, String> {
        if patterns.len() > FILTERS_MAX {
            return Err(format!("{} filters; Lambda allows at most {FILTERS_MAX}", patterns.len()));
        }
        let mut compiled = Vec::with_capacity(patterns.len());
        for (index, text) in patterns.iter().enumerate() {
            if text.len() > FILTER_PATTERN_BYTES_MAX {
                return Err(format!(
                    "filter {index} is {} bytes; Lambda allows {FILTER_PATTERN_BYTES_MAX}",
                    text.len()
                ));
            }
            let value: Value = serde_json::from_str(text)
                .map_err(|e| format!("filter {index} is not JSON: {e}"))?;
            let Value::Object(pattern) = value else {
                return Err(format!(
                    "filter {index} must be a JSON object, like {{\"value\": ...}}"
                ));
            };
            check_pattern(&pattern).map_err(|e| format!("filter {index}: {e}"))?;
            compiled.push(pattern);
        }
        Ok(Filters { patterns: compiled })
    }

    /// Whether there are no filters (every record passes).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `record` (the filterable view of a record) passes.
    pub fn matches(&self, record: &Value) -> bool {
        self.is_empty() || self.patterns.iter().any(|pattern| object_matches(pattern, record))
    }
}

/// The view of a record that patterns see: key and value as JSON when they are JSON.
pub fn filterable(
    topic: &str,
    partition: i32,
    offset: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Value {
    let bytes = |b: Option<&[u8]>| match b {
        None => Value::Null,
        Some(b) => serde_json::from_slice(b)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned())),
    };
    serde_json::json!({
        "topic": topic, "partition": partition, "offset": offset,
        "key": bytes(key), "value": bytes(value),
    })
}

fn check_pattern(pattern: &Map<String, Value>) -> Result<(), String> {
    for (field, rule) in pattern {
        match (field.as_str(), rule) {
            ("$or", Value::Array(alternatives)) => {
                for alternative in alternatives {
                    let Value::Object(alternative) = alternative else {
                        return Err("$or takes a list of patterns".into());
                    };
                    check_pattern(alternative)?;
                }
            }
            (_, Value::Object(nested)) => check_pattern(nested)?,
            (_, Value::Array(matchers)) => {
                for matcher in matchers {
                    check_matcher(field, matcher)?;
                }
            }
            _ => {
                return Err(format!(
                    "{field}: a field takes a list of matchers or a nested pattern"
                ))
            }
        }
    }
    Ok(())
}

fn check_matcher(field: &str, matcher: &Value) -> Result<(), String> {
    let Value::Object(rule) = matcher else { return Ok(()) };
    let (kind, argument) = rule.iter().next().ok_or(format!("{field}: an empty matcher {{}}"))?;
    match (kind.as_str(), argument) {
        ("prefix" | "suffix" | "equals-ignore-case", Value::String(_)) => Ok(()),
        ("exists", Value::Bool(_)) => Ok(()),
        ("anything-but", _) => Ok(()),
        ("numeric", Value::Array(parts)) => numeric_bounds(parts).map(|_| ()),
        _ => Err(format!("{field}: unknown or malformed matcher {matcher}")),
    }
}

/// `[">", 0, "<=", 5]` as (operator, number) pairs.
fn numeric_bounds(parts: &[Value]) -> Result<Vec<(&str, f64)>, String> {
    let mut bounds = Vec::new();
    for pair in parts.chunks(2) {
        match pair {
            [Value::String(op), Value::Number(n)]
                if matches!(op.as_str(), "<" | "<=" | "=" | ">" | ">=") =>
            {
                bounds.push((op.as_str(), n.as_f64().unwrap_or(f64::NAN)));
            }
            _ => return Err(format!("numeric takes operator/number pairs, got {parts:?}")),
        }
    }
    Ok(bounds)
}

fn object_matches(pattern: &Map<String, Value>, data: &Value) -> bool {
    pattern.iter().all(|(field, rule)| {
        if field == "$or" {
            let alternatives = rule.as_array().map(Vec::as_slice).unwrap_or_default();
            return alternatives
                .iter()
                .any(|a| a.as_object().is_some_and(|a| object_matches(a, data)));
        }
        let value = data.get(field);
        match rule {
            Value::Object(nested) => value.is_some_and(|v| match v {
                Value::Array(items) => items.iter().any(|item| object_matches(nested, item)),
                other => object_matches(nested, other),
            }),
            Value::Array(matchers) => matchers.iter().any(|m| matcher_matches(m, value)),
            _ => false,
        }
    })
}

fn matcher_matches(matcher: &Value, value: Option<&Value>) -> bool {
    if let Some(Value::Object(rule)) = Some(matcher) {
        if let Some(Value::Bool(wanted)) = rule.get("exists") {
            return value.is_some() == *wanted;
        }
    }
    let Some(value) = value else { return false };
    if let Value::Array(items) = value {
        return items.iter().any(|item| matcher_matches(matcher, Some(item)));
    }
    match matcher {
        Value::Object(rule) => {
            let Some((kind, argument)) = rule.iter().next() else { return false };
            match (kind.as_str(), argument, value) {
                ("prefix", Value::String(p), Value::String(s)) => s.starts_with(p.as_str()),
                ("suffix", Value::String(p), Value::String(s)) => s.ends_with(p.as_str()),
                ("equals-ignore-case", Value::String(p), Value::String(s)) => {
                    s.eq_ignore_ascii_case(p)
                }
                ("anything-but", excluded, _) => !anything_but_excludes(excluded, value),
                ("numeric", Value::Array(parts), Value::Number(n)) => {
                    let n = n.as_f64().unwrap_or(f64::NAN);
                    numeric_bounds(parts).is_ok_and(|bounds| {
                        bounds.iter().all(|(op, bound)| match *op {
                            "<" => n < *bound,
                            "<=" => n <= *bound,
                            "=" => n == *bound,
                            ">" => n > *bound,
                            _ => n >= *bound,
                        })
                    })
                }
                _ => false,
            }
        }
        literal => literals_equal(literal, value),
    }
}

fn anything_but_excludes(excluded: &Value, value: &Value) -> bool {
    match excluded {
        Value::Array(items) => items.iter().any(|item| literals_equal(item, value)),
        Value::Object(rule) => matcher_matches(&Value::Object(rule.clone()), Some(value)),
        literal => literals_equal(literal, value),
    }
}

/// Numbers compare by value (5 matches 5.0), everything else exactly.
fn literals_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passes(pattern: &str, value: &str) -> bool {
        let filters = Filters::parse(&[pattern.to_string()]).unwrap();
        filters.matches(&filterable("t", 0, 0, Some(b"k"), Some(value.as_bytes())))
    }

    #[test]
    fn lambdas_matchers_work_on_json_values() {
        let order = r#"{"status": "active", "amount": 42, "tags": ["x", "vip"], "note": "Hello"}"#;
        assert!(passes(r#"{"value": {"status": ["active"]}}"#, order));
        assert!(!passes(r#"{"value": {"status": ["done"]}}"#, order));
        assert!(passes(r#"{"value": {"status": [{"prefix": "act"}]}}"#, order));
        assert!(passes(r#"{"value": {"note": [{"equals-ignore-case": "HELLO"}]}}"#, order));
        assert!(passes(r#"{"value": {"amount": [{"numeric": [">", 10, "<=", 42]}]}}"#, order));
        assert!(!passes(r#"{"value": {"amount": [{"numeric": [">", 42]}]}}"#, order));
        assert!(passes(r#"{"value": {"tags": ["vip"]}}"#, order), "any element of a list");
        assert!(passes(r#"{"value": {"status": [{"anything-but": ["done"]}]}}"#, order));
        assert!(passes(r#"{"value": {"missing": [{"exists": false}]}}"#, order));
        assert!(!passes(r#"{"value": {"status": [{"exists": false}]}}"#, order));
        let either = r#"{"$or": [{"value": {"status": ["done"]}}, {"value": {"amount": [42]}}]}"#;
        assert!(passes(either, order));
    }

    #[test]
    fn plain_text_values_match_as_strings() {
        assert!(passes(r#"{"value": [{"prefix": "INFO"}]}"#, "INFO started"));
        assert!(!passes(r#"{"value": [{"prefix": "INFO"}]}"#, "DEBUG x"));
        assert!(!passes(r#"{"value": {"level": ["INFO"]}}"#, "INFO x"), "no fields in text");
    }

    #[test]
    fn malformed_patterns_are_refused_with_the_reason() {
        assert!(Filters::parse(&["[1]".into()]).unwrap_err().contains("JSON object"));
        assert!(Filters::parse(&["{\"value\": 1}".into()])
            .unwrap_err()
            .contains("list of matchers"));
        let bad = r#"{"value": [{"numeric": [">>", 1]}]}"#;
        assert!(Filters::parse(&[bad.into()]).unwrap_err().contains("numeric"));
        assert!(Filters::parse(&vec!["{}".to_string(); 11]).unwrap_err().contains("at most"));
    }
}
