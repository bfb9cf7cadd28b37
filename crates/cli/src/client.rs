//! Client wiring shared by every subcommand that talks to a broker: the
//! `--bootstrap-server` and `--command-config` flags, translation of Java client
//! properties to librdkafka's, and Kafka-style error messages.
//!
//! Precedence, lowest first: built-in defaults, the `--command-config` file, per-tool
//! properties (`--producer-property`, ...), then explicit flags (`--bootstrap-server`,
//! `--acks`, ...). librdkafka accepts Java's names for the common properties; the few Java
//! settings it cannot honour fail here with what to set instead, and Java-only tuning knobs
//! are dropped with a warning rather than failing client creation.
use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientConfig;

use crate::native;
use crate::properties::{self, redact, Properties};

/// The broker address when neither the flag, the environment nor the config file names one.
pub const DEFAULT_BOOTSTRAP_SERVER: &str = "127.0.0.1:9092";

/// Flags of every client subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Broker(s) to bootstrap from, as HOST:PORT[,HOST:PORT...] [default: 127.0.0.1:9092]
    #[arg(
        long = "bootstrap-server",
        visible_alias = "bootstrap-servers",
        alias = "broker-list",
        env = "SLUICE_BOOTSTRAP_SERVER",
        value_name = "HOST:PORT",
        global = true
    )]
    pub bootstrap_server: Option<String>,
    /// Java-style client properties file: security.protocol, ssl.*, sasl.*, client.id, ...
    #[arg(
        long = "command-config",
        visible_alias = "producer.config",
        visible_alias = "consumer.config",
        value_name = "FILE",
        global = true
    )]
    pub command_config: Option<PathBuf>,
}

impl ClientArgs {
    /// The librdkafka config: file, then `overrides`, then `--bootstrap-server`.
    /// `client_id` applies unless a property sets `client.id`.
    pub fn client_config(&self, client_id: &str, overrides: &Properties) -> Result<ClientConfig> {
        let mut properties = match &self.command_config {
            Some(path) => properties::load_file(path)?,
            None => Properties::new(),
        };
        properties.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(servers) = &self.bootstrap_server {
            properties.insert("bootstrap.servers".into(), servers.clone());
        }
        properties.entry("bootstrap.servers".into()).or_insert(DEFAULT_BOOTSTRAP_SERVER.into());
        properties.entry("client.id".into()).or_insert(client_id.into());
        let mut config = ClientConfig::new();
        for (key, value) in translate(properties)? {
            tracing::debug!(key = %key, value = %redact(&key, &value), "client property");
            config.set(key, value);
        }
        Ok(config)
    }
}

/// Makes keyed records land where a Java producer puts them: Java hashes keys with
/// murmur2, librdkafka by default with CRC32, so the same key would pick another
/// partition. Applies unless a property sets `partitioner`.
pub fn use_java_partitioner(config: &mut ClientConfig) {
    if config.get("partitioner").is_none() {
        config.set("partitioner", "murmur2_random");
    }
}

/// Java-only client settings librdkafka has no equivalent for and that change no
/// semantics a console tool relies on; they are dropped with a warning.
const JAVA_ONLY_IGNORED: &[&str] = &[
    "auto.include.jmx.reporter",
    "buffer.memory",
    "client.dns.lookup",
    "default.api.timeout.ms",
    "enable.metrics.push",
    "interceptor.classes",
    "key.deserializer",
    "key.serializer",
    "max.block.ms",
    "metric.reporters",
    "partitioner.class",
    "sasl.login.callback.handler.class",
    "sasl.login.class",
    "security.providers",
    "ssl.enabled.protocols",
    "ssl.engine.factory.class",
    "ssl.keymanager.algorithm",
    "ssl.protocol",
    "ssl.provider",
    "ssl.secure.random.implementation",
    "ssl.trustmanager.algorithm",
    "ssl.truststore.password",
    "ssl.truststore.type",
    "value.deserializer",
    "value.serializer",
];

/// Turns Java client properties into librdkafka properties, or says what to change.
pub fn translate(properties: Properties) -> Result<Properties> {
    let mut out = Properties::new();
    for (key, value) in properties {
        match key.as_str() {
            "ssl.truststore.location" => bail!(
                "ssl.truststore.location={value}: librdkafka cannot read Java keystores (JKS); \
                 export the CA certificates to a PEM file (keytool -exportcert -rfc) and set \
                 ssl.ca.location to it"
            ),
            "ssl.keystore.type" => check_keystore_type(&value)?,
            "ssl.endpoint.identification.algorithm" if value.is_empty() => {
                // Java disables hostname verification with an empty value; librdkafka
                // spells it `none`.
                out.insert(key, "none".into());
            }
            "sasl.mechanism" | "sasl.mechanisms" if value.eq_ignore_ascii_case("AWS_MSK_IAM") => {
                bail!("{}", msk_iam_unsupported())
            }
            "sasl.client.callback.handler.class" if value.contains("IAMClientCallbackHandler") => {
                bail!("{}", msk_iam_unsupported())
            }
            "sasl.client.callback.handler.class" => ignore_java_only(&key),
            "sasl.jaas.config" => out.extend(translate_jaas(&value)?),
            _ if JAVA_ONLY_IGNORED.contains(&key.as_str()) => ignore_java_only(&key),
            _ => {
                out.insert(key, value);
            }
        }
    }
    Ok(out)
}

fn ignore_java_only(key: &str) {
    tracing::warn!(key, "ignoring a Java-only client property librdkafka does not support");
}

fn msk_iam_unsupported() -> String {
    "AWS_MSK_IAM (IAMLoginModule) authentication needs the Java aws-msk-iam-auth library, \
     which librdkafka cannot load; use SASL/SCRAM (sasl.mechanism=SCRAM-SHA-512 with \
     sasl.username and sasl.password) or a PLAINTEXT/SSL listener"
        .to_string()
}

fn check_keystore_type(value: &str) -> Result<()> {
    if value.eq_ignore_ascii_case("PKCS12") {
        return Ok(());
    }
    if value.eq_ignore_ascii_case("PEM") {
        bail!(
            "ssl.keystore.type=PEM: set ssl.certificate.location and ssl.key.location to the \
             PEM files instead of ssl.keystore.location"
        );
    }
    bail!(
        "ssl.keystore.type={value}: librdkafka reads only PKCS#12 keystores; convert with \
         keytool -importkeystore -deststoretype PKCS12, or use ssl.certificate.location and \
         ssl.key.location with PEM files"
    )
}

/// librdkafka has no JAAS: the PLAIN and SCRAM login modules become `sasl.username` and
/// `sasl.password`. The value is a secret, so errors name the module, never the options.
fn translate_jaas(jaas: &str) -> Result<Properties> {
    let module = jaas.split_whitespace().next().unwrap_or_default();
    if module.ends_with("IAMLoginModule") {
        bail!("{}", msk_iam_unsupported());
    }
    if !(module.ends_with(".PlainLoginModule") || module.ends_with(".ScramLoginModule")) {
        bail!(
            "sasl.jaas.config uses {module}, but librdkafka has no JAAS: only PlainLoginModule \
             and ScramLoginModule are translated (to sasl.username and sasl.password); for \
             OAUTHBEARER set sasl.oauthbearer.* properties instead"
        );
    }
    let options = jaas_options(jaas);
    let mut out = Properties::new();
    for (option, property) in [("username", "sasl.username"), ("password", "sasl.password")] {
        match options.get(option) {
            Some(value) => out.insert(property.to_string(), value.clone()),
            None => bail!("sasl.jaas.config for {module} has no `{option}` option"),
        };
    }
    Ok(out)
}

/// Parses `Module flag key="value" key2=value2;` options; quotes may hold spaces.
fn jaas_options(jaas: &str) -> Properties {
    let mut options = Properties::new();
    let body = jaas.trim().trim_end_matches(';');
    let mut rest = body.split_once(char::is_whitespace).map_or("", |(_, rest)| rest);
    rest = rest.trim_start().split_once(char::is_whitespace).map_or("", |(_, rest)| rest);
    loop {
        rest = rest.trim_start();
        let Some((key, after)) = rest.split_once('=') else { break };
        let after = after.trim_start();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => quoted.split_once('"').unwrap_or((quoted, "")),
            None => after.split_once(char::is_whitespace).unwrap_or((after, "")),
        };
        options.insert(key.trim().to_string(), value.to_string());
        rest = remaining;
    }
    options
}

/// `NAME: description` for a librdkafka or broker error code, e.g.
/// `INVALID_REPLICATION_FACTOR: Broker: Invalid replication factor`.
pub fn describe_code(code: RDKafkaErrorCode) -> String {
    format!("{}: {}", native::error_name(code), native::error_description(code))
}

/// A Kafka error as the message users see: `NAME: description` when it carries an error
/// code (callers add what was being done as context), and never a secret property value.
pub fn kafka_error(error: KafkaError) -> anyhow::Error {
    let code = match &error {
        KafkaError::AdminOp(code) => Some(*code),
        KafkaError::ClientConfig(_, description, key, value) => {
            return anyhow!("invalid client property {key}={}: {description}", redact(key, value))
        }
        other => other.rdkafka_error_code(),
    };
    match code {
        Some(code) => anyhow!("{}", describe_code(code)),
        None => anyhow!("{error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Properties {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn passes_common_names_through() {
        let input = props(&[("security.protocol", "SSL"), ("ssl.ca.location", "/ca.pem")]);
        assert_eq!(translate(input.clone()).unwrap(), input);
    }

    #[test]
    fn rejects_truststores_naming_ssl_ca_location() {
        let error = translate(props(&[("ssl.truststore.location", "/t.jks")])).unwrap_err();
        assert!(error.to_string().contains("ssl.ca.location"), "{error}");
    }

    #[test]
    fn maps_empty_endpoint_identification_to_none() {
        let out = translate(props(&[("ssl.endpoint.identification.algorithm", "")])).unwrap();
        assert_eq!(out["ssl.endpoint.identification.algorithm"], "none");
    }

    #[test]
    fn drops_java_only_tuning() {
        let out = translate(props(&[("buffer.memory", "1"), ("acks", "all")])).unwrap();
        assert_eq!(out, props(&[("acks", "all")]));
    }

    #[test]
    fn translates_scram_jaas_without_leaking_the_password() {
        let jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required \
                    username=\"alice\" password=\"s3 cret\";";
        let out = translate(props(&[("sasl.jaas.config", jaas)])).unwrap();
        assert_eq!(out["sasl.username"], "alice");
        assert_eq!(out["sasl.password"], "s3 cret");
        let missing = "org.apache.kafka.common.security.plain.PlainLoginModule required \
                       username=\"alice\" passwd=\"hunter2\";";
        let error = translate(props(&[("sasl.jaas.config", missing)])).unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn rejects_msk_iam_with_an_alternative() {
        let error = translate(props(&[("sasl.mechanism", "AWS_MSK_IAM")])).unwrap_err();
        assert!(error.to_string().contains("SCRAM"), "{error}");
    }

    #[test]
    fn flag_beats_file_for_bootstrap_servers() {
        let args = ClientArgs { bootstrap_server: Some("h:1".into()), command_config: None };
        let config = args.client_config("t", &props(&[("bootstrap.servers", "x:2")])).unwrap();
        assert_eq!(config.get("bootstrap.servers"), Some("h:1"));
        assert_eq!(config.get("client.id"), Some("t"));
    }

    #[test]
    fn names_broker_errors_like_kafka() {
        let error = kafka_error(KafkaError::AdminOp(RDKafkaErrorCode::InvalidReplicationFactor));
        assert_eq!(
            error.to_string(),
            "INVALID_REPLICATION_FACTOR: Broker: Invalid replication factor"
        );
    }
}
