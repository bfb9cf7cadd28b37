//! The cli crate's integration tests: the real `sluice broker` binary, started per test by
//! `sluice-testkit`, driven by rdkafka (the real client) and by a raw TCP client for bytes no
//! real client would send.
//!
//! Kafka's semantics are the spec: each test asserts what a Kafka broker does, so the same
//! assertions hold against Apache Kafka. Each test starts its own broker on port 0 with its own
//! data folder, so tests run in parallel and share nothing. Every wait is bounded: a broker
//! that does not answer fails a test in seconds, with the broker log in the message.

mod bad_input;
mod crash;
mod delivery;
mod delivery_crash;
mod delivery_full_disk;
mod dynamic_configs;
mod etl;
mod full_disk;
mod functions;
mod functions_crash;
mod groups;
mod held_heartbeats;
mod idempotence;
mod lambda;
mod logs;
mod pipelining;
mod produce_consume;
mod raw_requests;
mod seed;
mod support;
mod transactions;
