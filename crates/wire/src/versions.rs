//! The APIs sluice serves and the version range of each.
//!
//! Ranges start where the `kafka-protocol` crate starts (Kafka 4 removed older versions,
//! KIP-896) and stop where sluice implements every field. They are what ApiVersions
//! advertises, so clients negotiate down to them.
use kafka_protocol::messages::ApiKey;

/// One served API: key and inclusive version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    /// The API.
    pub key: ApiKey,
    /// Lowest version served.
    pub min: i16,
    /// Highest version served.
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> ApiRange {
    ApiRange { key, min, max }
}

/// Every API sluice serves.
pub const SUPPORTED: &[ApiRange] = &[
    api(ApiKey::Produce, 3, 11),
    // Fetch 13+ names topics by id; every topic has a real id (metadata v10+ returns it).
    api(ApiKey::Fetch, 4, 16),
    api(ApiKey::ListOffsets, 1, 8),
    api(ApiKey::Metadata, 0, 12),
    // v9 is the consumer group protocol's (KIP-848: member epochs, STALE_MEMBER_EPOCH).
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::FindCoordinator, 0, 4),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::DescribeGroups, 0, 5),
    // v5 adds the group type filter (KIP-848): every group here is classic.
    api(ApiKey::ListGroups, 0, 5),
    // The consumer group protocol (KIP-848); v1 has clients name their member ids.
    api(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    api(ApiKey::ConsumerGroupDescribe, 0, 1),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::DeleteRecords, 0, 2),
    // Idempotent producers (the default in kafka-python 3 and the Java client) need ids.
    api(ApiKey::InitProducerId, 0, 4),
    // Transactions (KIP-98) at the versions clients send. AddPartitionsToTxn 4+ is the
    // broker-to-broker batch form, EndTxn 5 and TxnOffsetCommit 5 belong to transaction
    // version 2 (KIP-890 part 2), which sluice does not advertise.
    api(ApiKey::AddPartitionsToTxn, 0, 3),
    api(ApiKey::AddOffsetsToTxn, 0, 4),
    api(ApiKey::EndTxn, 0, 4),
    api(ApiKey::TxnOffsetCommit, 0, 4),
    api(ApiKey::DescribeTransactions, 0, 0),
    api(ApiKey::ListTransactions, 0, 1),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::DescribeCluster, 0, 1),
];

/// The served range of `key`, if sluice serves it.
pub fn range(key: ApiKey) -> Option<ApiRange> {
    SUPPORTED.iter().copied().find(|a| a.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Message;

    fn codec_range(key: ApiKey) -> (i16, i16) {
        let r = key.valid_versions();
        (r.min, r.max)
    }

    #[test]
    fn every_served_range_is_inside_the_codec_range() {
        for a in SUPPORTED {
            let (min, max) = codec_range(a.key);
            assert!(a.min >= min, "{:?} min {} below codec min {}", a.key, a.min, min);
            assert!(a.max <= max, "{:?} max {} above codec max {}", a.key, a.max, max);
        }
        let _ = ProduceRequest::VERSIONS;
    }
}
