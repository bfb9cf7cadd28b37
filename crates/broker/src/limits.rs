//! Broker limits, each with its reason.

/// Partitions per topic: bounds memory and open files per topic (Kafka has no hard cap;
/// a single node serving more than this is misconfigured).
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;

/// Topics per broker, so the registry and open files stay bounded.
pub const TOPICS_MAX: usize = 10_000;

/// Default `max.connections` (Kafka's default is unlimited; we bound file descriptors).
pub const CONNECTIONS_DEFAULT: usize = 1000;

/// Default `queued.max.request.bytes`: request bytes held in memory at once across all
/// connections (Kafka's default is unlimited; a thousand 100 MiB frames would not fit).
pub const QUEUED_REQUEST_BYTES_DEFAULT: u64 = 512 * 1024 * 1024;

/// Kafka's limit on topic name length (so `<topic>-<partition>` fits a file name).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// The longest a Fetch may wait, whatever the client asks (clients ask 500 ms by default).
pub const FETCH_WAIT_MS_MAX: u64 = 30_000;

/// Long-polling fetches wait on one of this many signals, chosen by partition (log2): a
/// partition's new data wakes the fetches of the partitions that share its signal, about
/// one in 1024 of the others, not every waiting fetch (1024 signals take under 64 KiB).
pub const FETCH_WAKE_SHARD_BITS: u32 = 10;

/// Buffers a Fetch's records may be copied through on their way to the socket, at once
/// across all connections (`crate::buffer_pool`); a response that finds none free is sent
/// with `sendfile`. With [`FETCH_COPY_BUFFER_BYTES`], at most 16 MiB.
pub const FETCH_COPY_BUFFERS: usize = 16;

/// Bytes of one copy buffer: each read and write of a copied Fetch moves this much at most.
/// 1 MiB is Kafka's default `max.partition.fetch.bytes`, so a partition's records usually
/// go in one read and one write; 1 MiB buffers beat 256 KiB and 2 MiB ones on the wire
/// benchmark (`docs/benchmarks.md`).
pub const FETCH_COPY_BUFFER_BYTES: usize = 1024 * 1024;

/// How long a copied Fetch answer waits, holding a copy buffer, for its socket to take
/// more bytes; then the buffer goes back to the pool and the rest of its chunk goes with
/// `sendfile`, so a consumer that stops reading keeps no buffer from the others. A consumer
/// that reads never waits this long (the socket takes bytes as the peer acknowledges them).
pub const FETCH_COPY_WRITE_WAIT_MS: u64 = 50;

/// Buffers Produce request bodies are read into, at once across all connections
/// (`crate::buffer_pool`); a body that finds none free, or is larger than
/// [`REQUEST_BUFFER_BYTES`], is read into memory of its own. At most 32 MiB, kept once used.
pub const REQUEST_BUFFERS: usize = 16;

/// Bytes of one request buffer: a Produce body up to this size is read into one. 2 MiB holds
/// a request at the clients' default size limits (librdkafka's `message.max.bytes` 1 MB,
/// the Java client's `max.request.size` 1 MiB) with room to spare.
pub const REQUEST_BUFFER_BYTES: usize = 2 * 1024 * 1024;

/// Members per consumer group.
pub const GROUP_MEMBERS_MAX: usize = 1000;

/// Consumer groups per broker.
pub const GROUPS_MAX: usize = 10_000;

/// Bytes of an OffsetCommit metadata string (Kafka's `offset.metadata.max.bytes`).
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;

/// Replies waiting to be written on one connection (requests read ahead while a produce's
/// sync runs). Java and librdkafka idempotent producers keep at most 5 requests in flight;
/// more only queue memory.
pub const REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX: usize = 16;

/// How long after EndTxn's markers are written their syncs wait for a produce's sync of the
/// same partitions to cover them, before syncing on their own (the partitions' high
/// watermarks stay below the markers until then).
pub const MARKER_SYNC_DELAY_MS: u64 = 5;

/// Free bytes the metadata store's file system must have before the store, refused by redb
/// after an I/O error, is reopened: the reopen first closes the handle that still serves
/// reads, and an open on a disk still full can fail and leave none.
pub const STORE_REOPEN_FREE_BYTES_MIN: u64 = 1024 * 1024;

/// Configs one dynamic broker level (this broker's, the cluster default's) or one group may
/// hold, and operations one AlterConfigs or IncrementalAlterConfigs resource may carry.
pub const DYNAMIC_CONFIG_KEYS_MAX: usize = 1000;

/// Bytes of one dynamic config's name plus value, and of a group id given configs.
pub const DYNAMIC_CONFIG_BYTES_MAX: usize = 64 * 1024;
