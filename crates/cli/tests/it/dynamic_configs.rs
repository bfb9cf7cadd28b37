//! Dynamic broker configs and group configs (AlterConfigs, IncrementalAlterConfigs and
//! DescribeConfigs on BROKER and GROUP resources), over raw requests: the cluster-wide
//! default (the empty broker name, `kafka-configs.sh --entity-default`) is a resource no
//! client library here can address (librdkafka and kafka-python both want a numeric broker
//! id). `tests/e2e/python/test_admin_*.py` drive the per-broker and group paths with
//! confluent-kafka and kafka-python.
use std::collections::BTreeMap;

use kafka_protocol::messages::{
    alter_configs_request, describe_configs_request, incremental_alter_configs_request,
    AlterConfigsRequest, DescribeConfigsRequest, IncrementalAlterConfigsRequest, ProduceRequest,
};
use kafka_protocol::protocol::StrBytes;
use sluice_testkit::raw::RawConn;
use sluice_testkit::BrokerProcess;

use crate::raw_requests::{
    connect, create_topic_raw, produce_request, record_batch, ANSWER_LIMIT, PRODUCE_VERSION,
};
use crate::support::start_broker;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const GROUP: i8 = 32;
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;
const MESSAGE_TOO_LARGE: i16 = 10;
const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;
/// DescribeConfigs sources.
const DYNAMIC_BROKER: i8 = 2;
const DYNAMIC_DEFAULT_BROKER: i8 = 3;
const DEFAULT: i8 = 5;
const GROUP_CONFIG: i8 = 8;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// One config as DescribeConfigs answers it: value, source, read-only, synonyms' sources.
#[derive(Debug, Clone, PartialEq)]
struct Described {
    value: Option<String>,
    source: i8,
    read_only: bool,
    synonyms: Vec<(String, i8)>,
}

struct Client<'a> {
    broker: &'a BrokerProcess,
    conn: RawConn,
    correlation_id: i32,
}

impl<'a> Client<'a> {
    fn new(broker: &'a BrokerProcess) -> Client<'a> {
        Client { broker, conn: connect(broker), correlation_id: 0 }
    }

    fn next_id(&mut self) -> i32 {
        self.correlation_id += 1;
        self.correlation_id
    }

    /// IncrementalAlterConfigs v1 on one resource: its error code and message.
    fn incremental(
        &mut self,
        resource_type: i8,
        name: &str,
        ops: &[(&str, i8, Option<&str>)],
        validate_only: bool,
    ) -> (i16, Option<String>) {
        let configs = ops
            .iter()
            .map(|(key, op, value)| {
                incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(s(key))
                    .with_config_operation(*op)
                    .with_value(value.map(s))
            })
            .collect();
        let resource = incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configs(configs);
        let request = IncrementalAlterConfigsRequest::default()
            .with_resources(vec![resource])
            .with_validate_only(validate_only);
        let id = self.next_id();
        let response = self.conn.round_trip(&request, 1, id, ANSWER_LIMIT).unwrap_or_else(|e| {
            panic!("IncrementalAlterConfigs: {e}; log:\n{}", self.broker.log_tail())
        });
        let answer = &response.responses[0];
        (answer.error_code, answer.error_message.as_ref().map(|m| m.to_string()))
    }

    /// AlterConfigs v2 (the whole set at that level) on one resource: its error code.
    fn replace(&mut self, resource_type: i8, name: &str, configs: &[(&str, &str)]) -> i16 {
        let configs = configs
            .iter()
            .map(|(key, value)| {
                alter_configs_request::AlterableConfig::default()
                    .with_name(s(key))
                    .with_value(Some(s(value)))
            })
            .collect();
        let resource = alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configs(configs);
        let request = AlterConfigsRequest::default().with_resources(vec![resource]);
        let id = self.next_id();
        let response = self
            .conn
            .round_trip(&request, 2, id, ANSWER_LIMIT)
            .unwrap_or_else(|e| panic!("AlterConfigs: {e}; log:\n{}", self.broker.log_tail()));
        response.responses[0].error_code
    }

    /// DescribeConfigs v4 (with synonyms) of one resource: its error code and configs.
    fn describe(&mut self, resource_type: i8, name: &str) -> (i16, BTreeMap<String, Described>) {
        let resource = describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configuration_keys(None);
        let request = DescribeConfigsRequest::default()
            .with_resources(vec![resource])
            .with_include_synonyms(true);
        let id = self.next_id();
        let response = self
            .conn
            .round_trip(&request, 4, id, ANSWER_LIMIT)
            .unwrap_or_else(|e| panic!("DescribeConfigs: {e}; log:\n{}", self.broker.log_tail()));
        let result = &response.results[0];
        let configs = result
            .configs
            .iter()
            .map(|c| {
                let described = Described {
                    value: c.value.as_ref().map(|v| v.to_string()),
                    source: c.config_source,
                    read_only: c.read_only,
                    synonyms: c.synonyms.iter().map(|y| (y.name.to_string(), y.source)).collect(),
                };
                (c.name.to_string(), described)
            })
            .collect();
        (result.error_code, configs)
    }

    fn topic_config(&mut self, topic: &str, key: &str) -> Described {
        let (code, configs) = self.describe(TOPIC, topic);
        assert_eq!(code, 0, "DescribeConfigs {topic}");
        configs.get(key).cloned().unwrap_or_else(|| panic!("{key} not described: {configs:?}"))
    }

    /// Produces one batch holding one value of `bytes` bytes: the partition's error code.
    fn produce(&mut self, topic: &str, bytes: usize) -> i16 {
        let value = "v".repeat(bytes);
        let request = produce_request(topic, -1, record_batch(&[&value]).freeze());
        let id = self.next_id();
        let response: <ProduceRequest as kafka_protocol::protocol::Request>::Response = self
            .conn
            .round_trip(&request, PRODUCE_VERSION, id, ANSWER_LIMIT)
            .unwrap_or_else(|e| panic!("Produce: {e}; log:\n{}", self.broker.log_tail()));
        response.responses[0].partition_responses[0].error_code
    }
}

#[test]
fn broker_configs_set_at_run_time_reach_every_topic_and_survive_a_restart() {
    let mut broker = start_broker();
    create_topic_raw(&broker, "plain", 1);
    create_topic_raw(&broker, "roomy", 1);
    {
        let mut client = Client::new(&broker);
        // A topic override wins over every broker level.
        let roomy = [("max.message.bytes", SET, Some("100000"))];
        assert_eq!(client.incremental(TOPIC, "roomy", &roomy, false).0, 0);

        // The cluster-wide default, then this broker's own value over it.
        let default = [("message.max.bytes", SET, Some("5000"))];
        assert_eq!(client.incremental(BROKER, "", &default, false), (0, None));
        let described = client.topic_config("plain", "max.message.bytes");
        assert_eq!(described.value.as_deref(), Some("5000"));
        assert_eq!(described.source, DYNAMIC_DEFAULT_BROKER);
        let own = [("message.max.bytes", SET, Some("6000"))];
        assert_eq!(client.incremental(BROKER, "1", &own, false), (0, None));
        let described = client.topic_config("plain", "max.message.bytes");
        assert_eq!(described.value.as_deref(), Some("6000"));
        assert_eq!(described.source, DYNAMIC_BROKER);
        let levels: Vec<i8> = described.synonyms.iter().map(|(_, source)| *source).collect();
        assert_eq!(levels, [DYNAMIC_BROKER, DYNAMIC_DEFAULT_BROKER, DEFAULT], "{described:?}");

        // It applies at once: the log refuses a batch over it, the override still allows it.
        assert_eq!(client.produce("plain", 7000), MESSAGE_TOO_LARGE);
        assert_eq!(client.produce("roomy", 7000), 0);
        assert_eq!(client.produce("plain", 1000), 0);

        // The broker lists it as dynamic; the empty name lists only the default level.
        let (code, configs) = client.describe(BROKER, "1");
        assert_eq!(code, 0);
        let listed = &configs["message.max.bytes"];
        assert_eq!((listed.value.as_deref(), listed.source), (Some("6000"), DYNAMIC_BROKER));
        assert!(!listed.read_only, "message.max.bytes changes at run time: {listed:?}");
        assert!(configs["log.dirs"].read_only, "log.dirs is read at start only");
        let (code, defaults) = client.describe(BROKER, "");
        assert_eq!(code, 0);
        assert_eq!(defaults.keys().collect::<Vec<_>>(), ["message.max.bytes"]);
        assert_eq!(defaults["message.max.bytes"].source, DYNAMIC_DEFAULT_BROKER);
    }

    // An answered change is durable: SIGKILL, then start again on the same data.
    broker.kill9().expect("the broker is killed");
    broker.restart().expect("the broker restarts");
    let mut client = Client::new(&broker);
    let described = client.topic_config("plain", "max.message.bytes");
    assert_eq!(described.value.as_deref(), Some("6000"), "kept across the restart");
    assert_eq!(client.produce("plain", 7000), MESSAGE_TOO_LARGE);

    // DELETE falls back to the default level; AlterConfigs with nothing clears that level.
    let delete = [("message.max.bytes", DELETE, None)];
    assert_eq!(client.incremental(BROKER, "1", &delete, false), (0, None));
    assert_eq!(client.topic_config("plain", "max.message.bytes").value.as_deref(), Some("5000"));
    assert_eq!(client.replace(BROKER, "", &[]), 0);
    let described = client.topic_config("plain", "max.message.bytes");
    assert_eq!((described.value.as_deref(), described.source), (Some("1048588"), DEFAULT));
    assert_eq!(client.produce("plain", 7000), 0);
}

#[test]
fn broker_configs_refused_as_kafka_refuses_them() {
    let broker = start_broker();
    create_topic_raw(&broker, "kept", 1);
    let mut client = Client::new(&broker);
    let set = |key: &'static str, value: &'static str| [(key, SET, Some(value))];

    // Read only at start, another broker, not a broker id, a bad value, a secret: each is
    // INVALID_REQUEST on a broker resource, as Kafka answers (KAFKA-13609).
    let (code, message) = client.incremental(BROKER, "1", &set("log.dirs", "/elsewhere"), false);
    assert_eq!(code, INVALID_REQUEST);
    assert!(message.unwrap_or_default().contains("restart"));
    let retention = set("log.retention.ms", "1000");
    assert_eq!(client.incremental(BROKER, "2", &retention, false).0, INVALID_REQUEST);
    assert_eq!(client.incremental(BROKER, "one", &retention, false).0, INVALID_REQUEST);
    let (code, message) = client.incremental(BROKER, "", &set("log.retention.ms", "soon"), false);
    assert_eq!(code, INVALID_REQUEST);
    assert!(message.unwrap_or_default().contains("log.retention.ms"), "named as set");
    let secret = set("ssl.keystore.password", "hunter2");
    let (code, message) = client.incremental(BROKER, "1", &secret, false);
    assert_eq!(code, INVALID_REQUEST);
    assert!(!message.unwrap_or_default().contains("hunter2"), "the secret is not echoed");
    // Listener settings are per broker only, as in Kafka.
    let relogin = set("sasl.kerberos.min.time.before.relogin", "58000");
    assert_eq!(client.incremental(BROKER, "", &relogin, false).0, INVALID_REQUEST);
    assert_eq!(client.incremental(BROKER, "1", &relogin, false).0, 0);
    // APPEND only on lists; a list starts from its default.
    let append = [("background.threads", APPEND, Some("2"))];
    assert_eq!(client.incremental(BROKER, "1", &append, false).0, INVALID_REQUEST);
    // A name Kafka does not define is stored, as Kafka stores it (for plugins).
    assert_eq!(client.incremental(BROKER, "1", &set("plugin.setting", "x"), false).0, 0);
    // DELETE of anything, even a config read only at start, is a no-op as in Kafka.
    assert_eq!(client.incremental(BROKER, "1", &[("log.dirs", DELETE, None)], false).0, 0);
    let compact = [("log.cleanup.policy", APPEND, Some("compact"))];
    assert_eq!(client.incremental(BROKER, "1", &compact, false).0, 0);
    let (_, configs) = client.describe(BROKER, "1");
    assert_eq!(configs["log.cleanup.policy"].value.as_deref(), Some("delete,compact"));
    let uncompact = [("log.cleanup.policy", SUBTRACT, Some("compact"))];
    assert_eq!(client.incremental(BROKER, "1", &uncompact, false).0, 0);

    // validate_only checks and changes nothing.
    assert_eq!(client.incremental(BROKER, "", &retention, true), (0, None));
    assert_eq!(client.topic_config("kept", "retention.ms").source, DEFAULT);
    // Nothing refused was kept.
    let (_, configs) = client.describe(BROKER, "1");
    let dynamic: Vec<&String> =
        configs.iter().filter(|(_, c)| c.source == DYNAMIC_BROKER).map(|(k, _)| k).collect();
    assert_eq!(
        dynamic,
        ["log.cleanup.policy", "plugin.setting", "sasl.kerberos.min.time.before.relogin"]
    );
}

#[test]
fn group_configs_are_checked_stored_and_described() {
    let mut broker = start_broker();
    {
        let mut client = Client::new(&broker);
        // Any group id, with or without members, has the broker's defaults.
        let (code, configs) = client.describe(GROUP, "orders");
        assert_eq!(code, 0);
        assert_eq!(configs.len(), 6, "{configs:?}");
        let session = &configs["consumer.session.timeout.ms"];
        assert_eq!((session.value.as_deref(), session.source), (Some("45000"), DEFAULT));

        let set = [("consumer.session.timeout.ms", SET, Some("50000"))];
        assert_eq!(client.incremental(GROUP, "orders", &set, false), (0, None));
        let too_short = [("consumer.session.timeout.ms", SET, Some("1000"))];
        let (code, message) = client.incremental(GROUP, "orders", &too_short, false);
        assert_eq!(code, INVALID_CONFIG);
        assert!(message.unwrap_or_default().contains("group.consumer.min.session.timeout.ms"));
        let unknown = [("session.timeout.ms", SET, Some("50000"))];
        assert_eq!(client.incremental(GROUP, "orders", &unknown, false).0, INVALID_CONFIG);
        assert_eq!(client.incremental(GROUP, "", &set, false).0, INVALID_REQUEST);
    }
    // An answered change is durable: SIGKILL, then start again on the same data.
    broker.kill9().expect("the broker is killed");
    broker.restart().expect("the broker restarts");
    let mut client = Client::new(&broker);
    let (_, configs) = client.describe(GROUP, "orders");
    let session = &configs["consumer.session.timeout.ms"];
    assert_eq!((session.value.as_deref(), session.source), (Some("50000"), GROUP_CONFIG));
    let delete = [("consumer.session.timeout.ms", DELETE, None)];
    assert_eq!(client.incremental(GROUP, "orders", &delete, false), (0, None));
    let (_, configs) = client.describe(GROUP, "orders");
    assert_eq!(configs["consumer.session.timeout.ms"].source, DEFAULT);
}
