//! Dynamic partitioning's metadata extraction query: the subset of JQ that Firehose
//! users write in `MetadataExtractionQuery`, an object of named paths:
//! `{customer_id: .customer_id, year: .event.date.year, first: .items[0].sku}`.
//!
//! A path is `.` followed by fields (`.name` or `."any name"` or `["any name"]`) and array
//! indexes (`[0]`). Each key's value must be a string, number or boolean; `null`, a missing
//! field or a nested object fails the record (it goes to the error prefix as
//! `partitioning-failed`), as Firehose does.
use serde_json::Value;

use crate::limits::{PARTITION_KEYS_MAX, PARTITION_KEY_VALUE_BYTES_MAX};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(usize),
}

/// A parsed metadata extraction query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    keys: Vec<(String, Vec<Step>)>,
}

impl Query {
    /// Parses a query, or says what is wrong with it.
    pub fn parse(text: &str) -> Result<Query, String> {
        let body = text
            .trim()
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .ok_or_else(|| format!("{text:?} is not an object like {{key: .field}}"))?;
        let mut keys = Vec::new();
        for entry in split_top_level(body) {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let (name, path) =
                entry.split_once(':').ok_or_else(|| format!("{entry:?} needs `name: .path`"))?;
            let name = name.trim().trim_matches('"');
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("key {name:?} must be letters, digits and '_'"));
            }
            keys.push((name.to_string(), parse_path(path.trim())?));
        }
        if keys.is_empty() {
            return Err("the query names no key".into());
        }
        if keys.len() > PARTITION_KEYS_MAX {
            return Err(format!("{} keys; Firehose allows {PARTITION_KEYS_MAX}", keys.len()));
        }
        Ok(Query { keys })
    }

    /// The key names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(name, _)| name.as_str())
    }

    /// Extracts every key from a JSON record, or says why the record cannot be partitioned.
    pub fn extract(&self, value: &Value) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::with_capacity(self.keys.len());
        for (name, path) in &self.keys {
            let mut current = value;
            for step in path {
                let next = match step {
                    Step::Field(field) => current.get(field.as_str()),
                    Step::Index(index) => current.get(*index),
                };
                current = next.ok_or_else(|| format!("{name}: the record has no {step:?}"))?;
            }
            let text = match current {
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                other => {
                    return Err(format!(
                        "{name}: expected a string, number or boolean, got {other}"
                    ))
                }
            };
            if text.len() > PARTITION_KEY_VALUE_BYTES_MAX {
                return Err(format!(
                    "{name}: value is {} bytes; at most {PARTITION_KEY_VALUE_BYTES_MAX}",
                    text.len()
                ));
            }
            out.push((name.clone(), text));
        }
        Ok(out)
    }
}

/// Splits on commas outside quotes and brackets.
fn split_top_level(body: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut quoted, mut start) = (Vec::new(), 0i32, false, 0);
    for (index, c) in body.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                parts.push(&body[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&body[start..]);
    parts
}

fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let mut rest =
        path.strip_prefix('.').ok_or_else(|| format!("path {path:?} must start with '.'"))?;
    let mut steps = Vec::new();
    let bad = || format!("path {path:?} is not .field, .\"field\", [\"field\"] or [index] steps");
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let close = after.find(']').ok_or_else(bad)?;
            let inside = after[..close].trim();
            if let Some(quoted) = inside.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                steps.push(Step::Field(quoted.to_string()));
            } else {
                steps.push(Step::Index(inside.parse().map_err(|_| bad())?));
            }
            rest = after[close + 1..].strip_prefix('.').unwrap_or(&after[close + 1..]);
        } else if let Some(after) = rest.strip_prefix('"') {
            let close = after.find('"').ok_or_else(bad)?;
            steps.push(Step::Field(after[..close].to_string()));
            rest = after[close + 1..].strip_prefix('.').unwrap_or(&after[close + 1..]);
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let field = &rest[..end];
            if field.is_empty() || !field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(bad());
            }
            steps.push(Step::Field(field.to_string()));
            rest = rest[end..].strip_prefix('.').unwrap_or(&rest[end..]);
        }
    }
    if steps.is_empty() {
        return Err(bad());
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extracts_named_paths() {
        let query =
            Query::parse(r#"{customer_id: .customer_id, year: .date.year, sku: .items[1]["sku id"], ok: ."flag"}"#)
                .unwrap();
        let record = json!({"customer_id": "c1", "date": {"year": 2026}, "items": [{}, {"sku id": "s"}], "flag": true});
        assert_eq!(
            query.extract(&record).unwrap(),
            vec![
                ("customer_id".into(), "c1".into()),
                ("year".into(), "2026".into()),
                ("sku".into(), "s".into()),
                ("ok".into(), "true".into()),
            ]
        );
        assert_eq!(query.names().collect::<Vec<_>>(), ["customer_id", "year", "sku", "ok"]);
    }

    #[test]
    fn missing_null_and_nested_values_fail_the_record() {
        let query = Query::parse("{c: .customer.id}").unwrap();
        assert!(query.extract(&json!({"customer": {}})).unwrap_err().contains("no"));
        assert!(query.extract(&json!({"customer": {"id": null}})).is_err());
        assert!(query.extract(&json!({"customer": {"id": {"x": 1}}})).is_err());
        assert!(query.extract(&json!([1])).is_err());
    }

    #[test]
    fn rejects_bad_queries() {
        for bad in ["c: .x", "{}", "{c .x}", "{c: x}", "{c: .a..b}", "{c: .a[x]}", "{c-d: .x}"] {
            assert!(Query::parse(bad).is_err(), "{bad}");
        }
    }
}
