//! Java-style properties: `--command-config` files, `--property k=v` flags, and redaction.
//!
//! Parsing follows `java.util.Properties.load` for what real client files use: `#`/`!`
//! comments, `=`, `:` or whitespace between key and value, surrounding whitespace trimmed,
//! a trailing backslash continuing the line (multi-line `sasl.jaas.config`), and the
//! escapes `\t \n \r \f \\ \= \: \#` plus `\uXXXX`. Later keys win, as in Java.
//!
//! Values of secret keys never reach a log or an error message: see [`redact`].
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::limits::CONFIG_FILE_BYTES_MAX;

/// Property names mapped to their values, sorted by name.
pub type Properties = BTreeMap<String, String>;

/// Reads a small text file, refusing files over [`CONFIG_FILE_BYTES_MAX`].
pub fn read_config_file(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open config file {}", path.display()))?;
    let mut text = String::new();
    file.take(CONFIG_FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read config file {} as UTF-8", path.display()))?;
    if text.len() as u64 > CONFIG_FILE_BYTES_MAX {
        bail!(
            "config file {} is over {CONFIG_FILE_BYTES_MAX} bytes; is it the right file?",
            path.display()
        );
    }
    Ok(text)
}

/// Reads and parses a properties file.
pub fn load_file(path: &Path) -> Result<Properties> {
    let text = read_config_file(path)?;
    parse(&text).with_context(|| format!("cannot parse properties file {}", path.display()))
}

/// Parses properties text.
pub fn parse(text: &str) -> Result<Properties> {
    let mut properties = Properties::new();
    for (line_number, logical) in logical_lines(text) {
        let (key, value) = split_entry(&logical).with_context(|| format!("line {line_number}"))?;
        if key.is_empty() {
            bail!("line {line_number}: a property needs a name before its value");
        }
        properties.insert(key, value);
    }
    Ok(properties)
}

/// Joins continuation lines and drops blank and comment lines. Yields the 1-based number
/// of each logical line's first physical line, for error messages.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        let continued = pending.is_some();
        if !continued && (trimmed.is_empty() || trimmed.starts_with(['#', '!'])) {
            continue;
        }
        let (start, mut logical) = pending.take().unwrap_or((index + 1, String::new()));
        logical.push_str(trimmed);
        if ends_with_odd_backslashes(&logical) {
            logical.pop();
            pending = Some((start, logical));
        } else {
            lines.push((start, logical));
        }
    }
    lines.extend(pending);
    lines
}

fn ends_with_odd_backslashes(line: &str) -> bool {
    line.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// Splits one logical line at the first unescaped `=`, `:` or whitespace, then unescapes.
fn split_entry(line: &str) -> Result<(String, String)> {
    let mut key_end = line.len();
    let mut escaped = false;
    for (index, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' || c.is_whitespace() {
            key_end = index;
            break;
        }
    }
    let key = &line[..key_end];
    let mut rest = line[key_end..].trim_start();
    if let Some(stripped) = rest.strip_prefix(['=', ':']) {
        rest = stripped.trim_start();
    }
    Ok((unescape(key)?, unescape(rest.trim_end())?))
}

fn unescape(text: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4)
                    .and_then(char::from_u32);
                match code {
                    Some(decoded) => out.push(decoded),
                    None => bail!("malformed \\u escape `\\u{hex}`: expected four hex digits"),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

/// Parses one `key=value` flag (`--property`, `--config`, `--override`, ...).
pub fn parse_pair(text: &str) -> Result<(String, String)> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => bail!("expected KEY=VALUE, got `{}`", redact_pair(text)),
    }
}

/// Parses repeated `key=value` flags; later flags win.
pub fn parse_pairs(texts: &[String]) -> Result<Properties> {
    texts.iter().map(|text| parse_pair(text)).collect()
}

/// Whether a property holds a secret whose value must never be logged.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "sasl.jaas.config", "token"].iter().any(|word| key.contains(word))
}

/// The value as it may appear in logs and errors.
pub fn redact<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret(key) {
        "[redacted]"
    } else {
        value
    }
}

/// A `key=value` text as it may appear in logs and errors.
fn redact_pair(text: &str) -> String {
    match text.split_once('=') {
        Some((key, value)) => format!("{key}={}", redact(key, value)),
        None if is_secret(text) => "[redacted]".to_string(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_separators_and_whitespace() {
        let text = "# comment\n! also a comment\n\n  security.protocol = SSL  \n\
                    client.id:tool\nsasl.mechanism PLAIN\nempty=\nflag\n";
        let properties = parse(text).unwrap();
        assert_eq!(properties["security.protocol"], "SSL");
        assert_eq!(properties["client.id"], "tool");
        assert_eq!(properties["sasl.mechanism"], "PLAIN");
        assert_eq!(properties["empty"], "");
        assert_eq!(properties["flag"], "");
        assert_eq!(properties.len(), 5);
    }

    #[test]
    fn joins_continuation_lines_like_java() {
        let text = "sasl.jaas.config=org.Module required \\\n    username=\"a\" \\\n  \
                    password=\"b\";\nnext=1\n";
        let properties = parse(text).unwrap();
        assert_eq!(
            properties["sasl.jaas.config"],
            "org.Module required username=\"a\" password=\"b\";"
        );
        assert_eq!(properties["next"], "1");
    }

    #[test]
    fn keeps_escaped_separators_and_unicode() {
        let properties = parse("a\\=b=c\\:d\npath=C:\\\\x\nu=\\u0041\n").unwrap();
        assert_eq!(properties["a=b"], "c:d");
        assert_eq!(properties["path"], "C:\\x");
        assert_eq!(properties["u"], "A");
    }

    #[test]
    fn later_keys_win() {
        let properties = parse("acks=1\nacks=all\n").unwrap();
        assert_eq!(properties["acks"], "all");
    }

    #[test]
    fn rejects_a_value_without_a_name() {
        let error = parse("ok=1\n=value\n").unwrap_err();
        assert!(format!("{error:#}").contains("line 2"), "{error:#}");
    }

    #[test]
    fn parses_flag_pairs_keeping_equals_in_values() {
        assert_eq!(parse_pair("k=a=b").unwrap(), ("k".into(), "a=b".into()));
        assert!(parse_pair("novalue").is_err());
        assert!(parse_pair("=x").is_err());
    }

    #[test]
    fn redacts_secret_keys_only() {
        assert_eq!(redact("ssl.key.password", "hunter2"), "[redacted]");
        assert_eq!(redact("sasl.jaas.config", "x"), "[redacted]");
        assert_eq!(redact("sasl.oauthbearer.token.endpoint.url", "x"), "[redacted]");
        assert_eq!(redact("client.secret", "x"), "[redacted]");
        assert_eq!(redact("client.id", "tool"), "tool");
        let error = parse_pair("sasl.password").unwrap_err();
        assert!(!format!("{error:#}").contains("sasl.password"));
    }
}
