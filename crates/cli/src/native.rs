//! Every direct librdkafka call of the binary: what the `rdkafka` crate does not wrap.
//!
//! - Kafka error names (`INVALID_REPLICATION_FACTOR`) from `rd_kafka_err2name`, so messages
//!   read like Kafka's own tools.
//! - The cluster id and controller id (`rd_kafka_clusterid`, `rd_kafka_controllerid`), which
//!   the crate's `Metadata` lacks.
//! - Topic ids from the DescribeTopics admin API (KIP-516 ids), for `topics --describe`.
//! - librdkafka's own `rd_kafka_commit_transaction`, for the transactional benchmark: the
//!   crate's `commit_transaction` first flushes by polling the main queue for up to 100 ms
//!   at a time, racing a `ThreadedProducer`'s polling thread for the delivery reports.
//!
//! Invariants: every pointer passed in comes from a live `rdkafka` client borrowed for the
//! whole call; every object created here is destroyed here, on every path; all calls block
//! for at most their timeout argument.
use std::collections::BTreeMap;
use std::ffi::{c_char, CStr, CString};

use rdkafka::client::{Client, ClientContext};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka_sys as sys;

/// librdkafka's description of an error code, e.g. `Broker: Invalid replication factor`.
pub fn error_description(code: RDKafkaErrorCode) -> String {
    match sys::RDKafkaRespErr::try_from(code as i32) {
        // SAFETY: err2str returns a static string for every code, known or not.
        Ok(raw) => unsafe { cstr_to_string(sys::rd_kafka_err2str(raw)) },
        Err(_) => format!("{code:?}"),
    }
}

/// Kafka's name for an error code (`UNKNOWN_TOPIC_OR_PARTITION`); librdkafka-local errors
/// keep librdkafka's name with its leading underscore (`_MSG_TIMED_OUT`).
pub fn error_name(code: RDKafkaErrorCode) -> String {
    let name = match sys::RDKafkaRespErr::try_from(code as i32) {
        // SAFETY: err2name returns a static string for every code, known or not.
        Ok(raw) => unsafe { cstr_to_string(sys::rd_kafka_err2name(raw)) },
        Err(_) => return format!("{code:?}"),
    };
    kafka_name(&name).map_or(name, str::to_string)
}

/// The broker error names librdkafka abbreviates or kept from older Kafka versions, and
/// Kafka's current name for each (`org.apache.kafka.common.protocol.Errors`).
fn kafka_name(librdkafka_name: &str) -> Option<&'static str> {
    Some(match librdkafka_name {
        "INVALID_MSG" => "CORRUPT_MESSAGE",
        "UNKNOWN_TOPIC_OR_PART" => "UNKNOWN_TOPIC_OR_PARTITION",
        "INVALID_MSG_SIZE" => "INVALID_FETCH_SIZE",
        "NOT_LEADER_FOR_PARTITION" => "NOT_LEADER_OR_FOLLOWER",
        "MSG_SIZE_TOO_LARGE" => "MESSAGE_TOO_LARGE",
        "STALE_CTRL_EPOCH" => "STALE_CONTROLLER_EPOCH",
        "TOPIC_EXCEPTION" => "INVALID_TOPIC_EXCEPTION",
        _ => return None,
    })
}

/// The cluster id, or `None` when the broker does not report one within `timeout_ms`.
pub fn cluster_id<C: ClientContext>(client: &Client<C>, timeout_ms: i32) -> Option<String> {
    let native = client.native_ptr();
    // SAFETY: `native` is live while `client` is borrowed; the returned string is
    // heap-allocated by librdkafka and freed below with its allocator.
    unsafe {
        let id = sys::rd_kafka_clusterid(native, timeout_ms);
        if id.is_null() {
            return None;
        }
        let text = cstr_to_string(id);
        sys::rd_kafka_mem_free(native, id.cast());
        Some(text)
    }
}

/// The controller's broker id, or `None` when unknown within `timeout_ms`.
pub fn controller_id<C: ClientContext>(client: &Client<C>, timeout_ms: i32) -> Option<i32> {
    // SAFETY: the native handle is live while `client` is borrowed.
    let id = unsafe { sys::rd_kafka_controllerid(client.native_ptr(), timeout_ms) };
    (id >= 0).then_some(id)
}

/// Commits the producer's current transaction as librdkafka's
/// `rd_kafka_commit_transaction` does it: flush (sending at once, whatever `linger.ms`, and
/// waiting until every record is acknowledged), then EndTxn. Call it only on a producer
/// whose delivery reports another thread serves, as a `ThreadedProducer`'s does: with
/// delivery reports as events, the flush waits for the count of records in flight to reach
/// zero and leaves the event queue to that thread.
pub fn commit_transaction<C: ClientContext>(
    client: &Client<C>,
    timeout_ms: i32,
) -> Result<(), String> {
    // SAFETY: the native handle is live while `client` is borrowed; a returned error
    // object is read, then destroyed here.
    unsafe {
        let error = sys::rd_kafka_commit_transaction(client.native_ptr(), timeout_ms);
        if error.is_null() {
            return Ok(());
        }
        let name = error_name(sys::rd_kafka_error_code(error).into());
        let message = cstr_to_string(sys::rd_kafka_error_string(error));
        sys::rd_kafka_error_destroy(error);
        Err(format!("{name}: {message}"))
    }
}

/// Topic ids by topic name, as Kafka prints them (URL-safe base64, no padding). Topics
/// the broker did not describe are missing; an error means the whole request failed.
pub fn topic_ids<C: ClientContext>(
    client: &Client<C>,
    topics: &[&str],
    timeout_ms: i32,
) -> Result<BTreeMap<String, String>, String> {
    let names: Vec<CString> = topics
        .iter()
        .map(|name| CString::new(*name).map_err(|_| format!("topic name {name:?} has a NUL")))
        .collect::<Result<_, _>>()?;
    let mut pointers: Vec<*const c_char> = names.iter().map(|name| name.as_ptr()).collect();
    let native = client.native_ptr();
    // SAFETY: `names` outlives the collection (librdkafka copies the names); each object
    // created here is destroyed before returning, and the event is destroyed after its
    // results are copied out.
    unsafe {
        let collection =
            sys::rd_kafka_TopicCollection_of_topic_names(pointers.as_mut_ptr(), pointers.len());
        let options = sys::rd_kafka_AdminOptions_new(
            native,
            sys::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
        );
        let mut errstr = [0 as c_char; 512];
        sys::rd_kafka_AdminOptions_set_request_timeout(
            options,
            timeout_ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        let queue = sys::rd_kafka_queue_new(native);
        sys::rd_kafka_DescribeTopics(native, collection, options, queue);
        let event = sys::rd_kafka_queue_poll(queue, timeout_ms.saturating_add(1_000));
        let result = read_topic_ids(event);
        if !event.is_null() {
            sys::rd_kafka_event_destroy(event);
        }
        sys::rd_kafka_queue_destroy(queue);
        sys::rd_kafka_AdminOptions_destroy(options);
        sys::rd_kafka_TopicCollection_destroy(collection);
        result
    }
}

/// Copies the ids out of a DescribeTopics result event.
///
/// # Safety
/// `event` is null or a live event from `rd_kafka_queue_poll`.
unsafe fn read_topic_ids(
    event: *mut sys::rd_kafka_event_t,
) -> Result<BTreeMap<String, String>, String> {
    if event.is_null() {
        return Err("DescribeTopics timed out".to_string());
    }
    let code = sys::rd_kafka_event_error(event);
    if code != sys::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        let name = error_name(code.into());
        let message = cstr_to_string(sys::rd_kafka_event_error_string(event));
        return Err(format!("{name}: {message}"));
    }
    let result = sys::rd_kafka_event_DescribeTopics_result(event);
    if result.is_null() {
        return Err("DescribeTopics returned an unexpected event".to_string());
    }
    let mut count = 0usize;
    let descriptions = sys::rd_kafka_DescribeTopics_result_topics(result, &mut count);
    let mut ids = BTreeMap::new();
    for index in 0..count {
        let description = *descriptions.add(index);
        if !sys::rd_kafka_TopicDescription_error(description).is_null() {
            continue;
        }
        let name = cstr_to_string(sys::rd_kafka_TopicDescription_name(description));
        let id = sys::rd_kafka_TopicDescription_topic_id(description);
        if id.is_null() {
            continue;
        }
        ids.insert(name, kafka_base64(&cstr_to_string(sys::rd_kafka_Uuid_base64str(id))));
    }
    Ok(ids)
}

/// librdkafka prints ids in standard base64; Kafka's `Uuid.toString` uses the URL-safe
/// alphabet without padding, and users compare ids across tools.
fn kafka_base64(standard: &str) -> String {
    standard
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            other => other,
        })
        .collect()
}

/// # Safety
/// `text` is null or a NUL-terminated string valid for the duration of the call.
unsafe fn cstr_to_string(text: *const c_char) -> String {
    if text.is_null() {
        return String::new();
    }
    CStr::from_ptr(text).to_string_lossy().into_owned()
}

/// The all-zero id Kafka prints for a topic without one (`Uuid.ZERO_UUID`).
pub const ZERO_TOPIC_ID: &str = "AAAAAAAAAAAAAAAAAAAAAA";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_errors_like_kafka() {
        let name = error_name(RDKafkaErrorCode::InvalidReplicationFactor);
        assert_eq!(name, "INVALID_REPLICATION_FACTOR");
        assert_eq!(error_name(RDKafkaErrorCode::TopicAlreadyExists), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(RDKafkaErrorCode::MessageTimedOut), "_MSG_TIMED_OUT");
        let name = error_name(RDKafkaErrorCode::UnknownTopicOrPartition);
        assert_eq!(name, "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(RDKafkaErrorCode::MessageSizeTooLarge), "MESSAGE_TOO_LARGE");
    }

    #[test]
    fn converts_ids_to_kafka_base64() {
        assert_eq!(kafka_base64("ab+c/d=="), "ab-c_d");
        assert_eq!(ZERO_TOPIC_ID.len(), 22);
    }

    #[test]
    fn reads_a_null_string_as_empty() {
        // SAFETY: null is an accepted input.
        assert_eq!(unsafe { cstr_to_string(std::ptr::null()) }, "");
    }
}
