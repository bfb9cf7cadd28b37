//! The TCP server: accepts connections up to `max.connections` and serves each one.
//!
//! A connection's requests are read and handled one at a time, in order, as Kafka does, so
//! their effects happen in request order. Only a produce's wait for its sync, and a held
//! heartbeat (see `groups`), are set aside: the reply joins an ordered queue that a writer
//! task drains, and the next requests are read and appended meanwhile, so one producer's
//! pipelined requests share a group commit. The start of each request (and the end of the
//! connection) answers a held heartbeat, so no reply waits behind one.
//! Replies always leave in request order; the queue holds at most
//! `REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX`. Writes are buffered and flushed whenever no
//! further reply is ready. A Fetch answer comes in parts: its encoded fields are written as
//! any reply is, and its record batches are copied from their segment files through a
//! pooled buffer, or go with `sendfile` when every buffer is in use (`crate::buffer_pool`).
//!
//! Bad input never panics and never affects another connection: a bad size prefix, a
//! truncated header, an unknown API key, an unsupported version or an undecodable body is
//! logged once (one line, at WARN) and answered as Kafka answers it (KIP-511 for
//! ApiVersions) or by closing that connection.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use sluice_log::LogSlice;
use sluice_wire::response::Part;
use sluice_wire::{frame, request, response, Error as WireError};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter, Interest};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::buffer_pool::{BufferPool, PooledBuffer};
use crate::handlers::{self, Reply};
use crate::limits::{FETCH_COPY_WRITE_WAIT_MS, REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX};
use crate::state::State;

/// Bytes of the per-connection read and write buffers.
const SOCKET_BUFFER_BYTES: usize = 64 * 1024;

/// Request memory is budgeted in units of this many bytes (a semaphore counts in u32).
const BUDGET_UNIT_BYTES: u64 = 1024;

/// Accepts until shutdown.
pub(crate) async fn accept_loop(state: Arc<State>, listener: TcpListener) {
    let permits = Arc::new(Semaphore::new(state.settings.connections_max));
    // Rounded up, like each frame's share below, so any frame within the validated
    // `queued.max.request.bytes >= socket.request.max.bytes` fits the budget alone.
    let units = state.settings.queued_request_bytes_max.div_ceil(BUDGET_UNIT_BYTES);
    let units = units.min(Semaphore::MAX_PERMITS as u64).min(u64::from(u32::MAX));
    let budget = Arc::new(Semaphore::new(units as usize));
    let mut shutdown = state.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::warn!(%peer, limit = state.settings.connections_max, "max.connections reached; closing new connection");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let budget = Arc::clone(&budget);
        tokio::spawn(async move {
            serve(state, stream, peer, budget).await;
            drop(permit);
        });
    }
}

/// A reply on its way to the writer, with the request's share of the memory budget.
type Queued = (Reply, OwnedSemaphorePermit);

/// Serves one connection: this task reads and handles requests in order; a writer task
/// sends the replies in the same order. A produce's reply can wait for its sync while the
/// next requests are read and appended, so one producer's pipelined requests share a group
/// commit; at most `REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX` replies wait at once.
async fn serve(state: Arc<State>, stream: TcpStream, peer: SocketAddr, budget: Arc<Semaphore>) {
    let (reader, writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(SOCKET_BUFFER_BYTES, reader);
    let (replies, queued) = mpsc::channel(REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX);
    let idle = Duration::from_millis(state.settings.connection_idle_ms_max);
    let buffers = Arc::clone(&state.copy_buffers);
    let writing = tokio::spawn(write_replies(writer, queued, buffers, peer, idle));
    let connection = handlers::Connection::new();
    read_requests(&state, &mut reader, peer, &budget, &replies, &connection).await;
    connection.next_request();
    drop(replies);
    let _ = writing.await;
}

/// Reads, decodes and handles requests until the client leaves, the writer stops, the
/// broker shuts down, or a request cannot be served.
async fn read_requests(
    state: &Arc<State>,
    reader: &mut BufReader<OwnedReadHalf>,
    peer: SocketAddr,
    budget: &Arc<Semaphore>,
    replies: &mpsc::Sender<Queued>,
    connection: &handlers::Connection,
) {
    let mut shutdown = state.shutdown.subscribe();
    let idle = std::time::Duration::from_millis(state.settings.connection_idle_ms_max);
    loop {
        let mut prefix = [0u8; 4];
        tokio::select! {
            read = tokio::time::timeout(idle, reader.read_exact(&mut prefix)) => match read {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::debug!(%peer, "closing connection idle past connections.max.idle.ms");
                    return;
                }
            },
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = replies.closed() => return,
        }
        connection.next_request();
        let size = match frame::body_bytes(prefix, state.settings.frame_bytes_max) {
            Ok(size) => size,
            Err(error) => {
                tracing::warn!(%peer, %error, "closing connection: bad frame size");
                return;
            }
        };
        // Hold the frame's share of `queued.max.request.bytes` until it is answered; when the
        // budget is spent, this connection waits (back-pressure) rather than the heap growing.
        let units = (size as u64).div_ceil(BUDGET_UNIT_BYTES) as u32;
        let Ok(held) = Arc::clone(budget).acquire_many_owned(units).await else { return };
        // A client that announces a frame and stops sending must not hold its share of the
        // budget for ever: the body gets the idle timeout too.
        let pool = &state.request_buffers;
        let body = match tokio::time::timeout(idle, read_frame(reader, size, pool)).await {
            Ok(Ok(body)) => body,
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::warn!(%peer, size, "closing connection: request body not received within connections.max.idle.ms");
                return;
            }
        };
        let reply = match request::decode(body) {
            Ok(request) => handlers::handle(state, request, peer, connection).await,
            Err(error) => match refuse(peer, error) {
                Some(frame) => Reply::Frame(frame),
                None => Reply::Close,
            },
        };
        let close = matches!(reply, Reply::Close);
        if replies.send((reply, held)).await.is_err() || close {
            return;
        }
    }
}

/// A request body read into a pooled buffer: the buffer goes back to its pool when the last
/// `Bytes` made from it is dropped (the records of a Produce, once appended; the handler
/// copies the topic names its response keeps).
struct PooledFrame {
    buffer: PooledBuffer,
    len: usize,
}

impl AsRef<[u8]> for PooledFrame {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_slice().get(..self.len).unwrap_or_default()
    }
}

/// Reads a request body of `size` bytes. A Produce body (its API key is already in the
/// reader's buffer) that fits a buffer of `pool` is read into one; any other body into
/// memory of its own. Only Produce: other requests keep parts of their body for long
/// (a JoinGroup's protocol metadata stays with the group) and would keep a whole buffer.
async fn read_frame(
    reader: &mut BufReader<OwnedReadHalf>,
    size: usize,
    pool: &Arc<BufferPool>,
) -> std::io::Result<Bytes> {
    use tokio::io::AsyncBufReadExt;
    if size <= pool.buffer_bytes() {
        let produce = (ApiKey::Produce as i16).to_be_bytes();
        let buffered = reader.fill_buf().await?;
        if buffered.get(..produce.len()) == Some(&produce[..]) {
            if let Some(mut buffer) = pool.take() {
                let into = buffer.bytes().get_mut(..size);
                // Written whole before it is read: nothing of an earlier body shows.
                reader.read_exact(into.ok_or(std::io::ErrorKind::InvalidInput)?).await?;
                return Ok(Bytes::from_owner(PooledFrame { buffer, len: size }));
            }
        }
    }
    let mut body = BytesMut::with_capacity(size);
    read_body(reader, &mut body, size).await?;
    Ok(body.freeze())
}

/// Reads exactly `size` bytes into `body`'s spare capacity: no zeroing first (a memset of
/// every frame was 5% of the broker's CPU under produce load).
async fn read_body(
    reader: &mut BufReader<OwnedReadHalf>,
    body: &mut BytesMut,
    size: usize,
) -> std::io::Result<()> {
    while body.len() < size {
        let wanted = (size - body.len()) as u64;
        if (&mut *reader).take(wanted).read_buf(body).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    debug_assert!(body.len() == size, "read {} of {size}", body.len());
    Ok(())
}

/// Writes replies in request order, flushing whenever no further reply is ready. A client
/// that takes none of its replies' bytes for `idle` (`connections.max.idle.ms`) is let go:
/// it would otherwise keep this task, its connection and its `max.connections` permit for
/// ever (its reader waits on this queue, or on this task). Each wait for the socket is timed
/// ([`progress`]), so a slow client that keeps reading is never cut off.
async fn write_replies(
    writer: OwnedWriteHalf,
    mut queued: mpsc::Receiver<Queued>,
    buffers: Arc<BufferPool>,
    peer: SocketAddr,
    idle: Duration,
) {
    let mut writer = BufWriter::with_capacity(SOCKET_BUFFER_BYTES, writer);
    while let Some((mut reply, held)) = queued.recv().await {
        if let Reply::Later(later) = reply {
            // What is already written must not wait for this reply's sync.
            if !reply_sent(peer, flush(&mut writer, idle).await) {
                return;
            }
            reply = later.await;
        }
        let outcome = match reply {
            Reply::Frame(frame) => write_bytes(&mut writer, &frame, idle).await,
            // A frame cut short cannot be followed by another: the connection closes.
            Reply::Split(frame) => send_split(&mut writer, frame.parts, &buffers, idle).await,
            Reply::Nothing => Ok(()),
            Reply::Later(_) | Reply::Close => {
                reply_sent(peer, flush(&mut writer, idle).await);
                return;
            }
        };
        if !reply_sent(peer, outcome) {
            return;
        }
        drop(held);
        if queued.is_empty() && !reply_sent(peer, flush(&mut writer, idle).await) {
            return;
        }
    }
    reply_sent(peer, flush(&mut writer, idle).await);
}

/// Whether a reply's write went through; a failure is logged once when it is the broker's
/// news (a segment cut short, a client that stopped reading), not when the client left.
fn reply_sent(peer: SocketAddr, outcome: std::io::Result<()>) -> bool {
    match outcome {
        Ok(()) => true,
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
            tracing::error!(%peer, %error, "closing connection: a fetched segment was cut short");
            false
        }
        Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
            tracing::warn!(%peer, %error, "closing connection");
            false
        }
        Err(_) => false,
    }
}

/// Waits for `ready`, one step of a write, at most `idle`: a client that takes no bytes
/// for that long is `TimedOut`.
async fn progress<T>(
    idle: Duration,
    ready: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(idle, ready).await.unwrap_or_else(|_| {
        let message = "the client read none of its replies within connections.max.idle.ms";
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, message))
    })
}

/// Writes `bytes` through the buffer, each step within `idle`.
async fn write_bytes(
    writer: &mut BufWriter<OwnedWriteHalf>,
    bytes: &[u8],
    idle: Duration,
) -> std::io::Result<()> {
    let mut at = 0usize;
    while let Some(rest) = bytes.get(at..).filter(|rest| !rest.is_empty()) {
        match progress(idle, writer.write(rest)).await? {
            0 => return Err(std::io::ErrorKind::WriteZero.into()),
            n => at += n,
        }
    }
    Ok(())
}

/// Flushes the buffer (at most `SOCKET_BUFFER_BYTES`) within `idle`.
async fn flush(writer: &mut BufWriter<OwnedWriteHalf>, idle: Duration) -> std::io::Result<()> {
    progress(idle, writer.flush()).await
}

/// Sends a Fetch answer's parts in order: its encoded bytes through `writer`, its records
/// from their segment files ([`send_records`]).
async fn send_split(
    writer: &mut BufWriter<OwnedWriteHalf>,
    parts: Vec<Part<LogSlice>>,
    buffers: &Arc<BufferPool>,
    idle: Duration,
) -> std::io::Result<()> {
    for part in parts {
        match part {
            Part::Bytes(bytes) => write_bytes(writer, &bytes, idle).await?,
            Part::Records(slice) => {
                flush(writer, idle).await?;
                send_records(writer.get_mut(), &slice, buffers, idle).await?;
            }
        }
    }
    Ok(())
}

/// Sends a slice of a segment file a buffer's length at a time: each chunk read into a
/// buffer of the pool ([`read_chunk`]) and written, or sent with `sendfile` when no buffer
/// is free. A buffer is taken only once the socket can take bytes, and given back (the rest
/// of its chunk going with `sendfile`) when the socket takes nothing for
/// `FETCH_COPY_WRITE_WAIT_MS`: a consumer that stops reading keeps no buffer from the others.
async fn send_records(
    writer: &mut OwnedWriteHalf,
    slice: &LogSlice,
    buffers: &Arc<BufferPool>,
    idle: Duration,
) -> std::io::Result<()> {
    let wait = Duration::from_millis(FETCH_COPY_WRITE_WAIT_MS);
    let mut sent = 0usize;
    while sent < slice.len {
        progress(idle, writer.writable()).await?;
        let end = slice.len.min(sent.saturating_add(buffers.buffer_bytes()));
        let Some(buffer) = buffers.take() else {
            send_slice(writer.as_ref(), slice, sent, end, idle).await?;
            sent = end;
            continue;
        };
        let mut buffer = read_chunk(slice, sent, end, buffer).await?;
        let chunk = buffer.bytes().get(..end - sent).unwrap_or_default();
        let written = write_within(writer, chunk, wait).await?;
        drop(buffer);
        if written < end - sent {
            send_slice(writer.as_ref(), slice, sent + written, end, idle).await?;
        }
        sent = end;
    }
    Ok(())
}

/// Reads bytes `from..end` of the slice into the buffer: what the page cache holds on this
/// task, without waiting (`RWF_NOWAIT`; fetched bytes were mostly written moments before),
/// and whatever must come from the disk on the blocking pool, so a consumer far behind does
/// not stall the other connections of this worker.
async fn read_chunk(
    slice: &LogSlice,
    from: usize,
    end: usize,
    mut buffer: PooledBuffer,
) -> std::io::Result<PooledBuffer> {
    let too_large = || std::io::Error::other("a fetch chunk is larger than its copy buffer");
    let len = end.saturating_sub(from);
    let cached = slice.read_cached(from, buffer.bytes().get_mut(..len).ok_or_else(too_large)?);
    if cached >= len {
        return Ok(buffer);
    }
    let slice = slice.clone();
    tokio::task::spawn_blocking(move || {
        let rest = buffer.bytes().get_mut(cached..len).ok_or_else(too_large)?;
        slice.read_into(from + cached, rest).map(|()| buffer)
    })
    .await
    .map_err(|error| std::io::Error::other(format!("fetch read task failed: {error}")))?
}

/// Writes as much of `bytes` as the socket takes without ever waiting longer than `wait`
/// for it to take more: how many bytes went.
async fn write_within(
    writer: &OwnedWriteHalf,
    bytes: &[u8],
    wait: Duration,
) -> std::io::Result<usize> {
    let mut written = 0usize;
    while let Some(rest) = bytes.get(written..).filter(|rest| !rest.is_empty()) {
        match writer.try_write(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                match tokio::time::timeout(wait, writer.writable()).await {
                    Ok(ready) => ready?,
                    Err(_) => break,
                }
            }
            Err(error) => return Err(error),
        }
    }
    Ok(written)
}

/// Sends bytes `from..end` of a slice of a segment file straight from the page cache
/// (`sendfile`), waiting (at most `idle` at a time) whenever the socket's buffer is full.
async fn send_slice(
    socket: &TcpStream,
    slice: &LogSlice,
    from: usize,
    end: usize,
    idle: Duration,
) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    let mut sent = from;
    while sent < end {
        progress(idle, socket.writable()).await?;
        match socket.try_io(Interest::WRITABLE, || slice.send_to(socket.as_fd(), sent, end)) {
            Ok(0) => {
                let path = slice.path().display();
                let message =
                    format!("{path} ended {} bytes before the fetched batches", slice.len - sent);
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, message));
            }
            Ok(n) => sent += n,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// What to send for a request that did not decode; `None` closes the connection.
fn refuse(peer: SocketAddr, error: WireError) -> Option<BytesMut> {
    match error {
        WireError::UnsupportedVersion { api_key, correlation_id, .. }
            if api_key == ApiKey::ApiVersions as i16 =>
        {
            tracing::debug!(%peer, %error, "answering ApiVersions with UNSUPPORTED_VERSION (KIP-511)");
            match response::unsupported_api_versions(correlation_id) {
                Ok(reply) => Some(reply),
                Err(error) => {
                    tracing::error!(%peer, %error, "cannot encode ApiVersions fallback");
                    None
                }
            }
        }
        error => {
            tracing::warn!(%peer, %error, "closing connection: request cannot be served");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::REQUEST_BUFFERS;
    use sluice_log::Wait;

    async fn broker_with(key: &str, value: &str) -> (crate::Broker, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::BrokerConfig::new(dir.path());
        config.set("listeners", "PLAINTEXT://127.0.0.1:0");
        config.set(key, value);
        (crate::Broker::start(config).await.unwrap(), dir)
    }

    /// Reads until EOF; true when the broker closed within `limit`.
    async fn closed_within(stream: &mut TcpStream, limit: std::time::Duration) -> bool {
        let mut buf = [0u8; 64];
        matches!(tokio::time::timeout(limit, stream.read(&mut buf)).await, Ok(Ok(0)) | Ok(Err(_)))
    }

    #[tokio::test]
    async fn idle_connections_and_stalled_bodies_are_closed() {
        let (broker, _dir) = broker_with("connections.max.idle.ms", "200").await;
        let addr = broker.local_addrs()[0];
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let mut stalled = TcpStream::connect(addr).await.unwrap();
        stalled.write_all(&100i32.to_be_bytes()).await.unwrap();
        stalled.write_all(&[0u8; 10]).await.unwrap();
        let limit = std::time::Duration::from_secs(3);
        assert!(closed_within(&mut idle, limit).await, "idle connection closed");
        assert!(closed_within(&mut stalled, limit).await, "stalled body closed");
        broker.shutdown().await.unwrap();
    }

    /// A slice of three batches from a real segment file, and the bytes it holds.
    fn three_batches(dir: &std::path::Path) -> (LogSlice, Vec<u8>) {
        batches_of(dir, &[3000, 5000, 700])
    }

    /// A slice of one batch per record size, from a real segment file, and its bytes.
    fn batches_of(dir: &std::path::Path, sizes: &[usize]) -> (LogSlice, Vec<u8>) {
        let config = sluice_log::LogConfig::default();
        let mut log = sluice_log::PartitionLog::open(dir, config, 0).unwrap();
        for (i, size) in sizes.iter().enumerate() {
            let value = vec![i as u8 + 1; *size];
            log.append(&sluice_wire::batch::build(0, 0, &[&value]), 0).unwrap();
        }
        let located = log.locate(0).unwrap().unwrap();
        let slice = located.slice(usize::MAX, i64::MAX, true, Wait::ForDisk).unwrap().unwrap();
        let bytes = slice.read().unwrap();
        assert!(bytes.len() > sizes.iter().sum::<usize>(), "whole batches");
        (slice, bytes)
    }

    /// A Produce body is read into a pooled buffer, which goes back to the pool once the last
    /// bytes of the request are dropped; any other request, or a body larger than a buffer,
    /// is read into memory of its own.
    #[tokio::test]
    async fn produce_bodies_are_read_into_pooled_buffers_that_come_back() {
        let pool = Arc::new(BufferPool::new(1, 64));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (read_half, _write_half) = listener.accept().await.unwrap().0.into_split();
        let mut reader = BufReader::new(read_half);
        // API key 0 is Produce, 1 Fetch.
        let (produce, fetch, short) = ([0u8, 0, 1, 2, 3, 4, 5, 6], [0u8, 1, 9, 9], [0u8, 0, 7]);
        let large = [0u8; 100];
        for body in [&produce[..], &fetch, &large, &short] {
            client.write_all(body).await.unwrap();
        }

        let body = read_frame(&mut reader, produce.len(), &pool).await.unwrap();
        assert_eq!(&body[..], produce);
        assert_eq!(pool.counts(), (0, 0), "the pool's one buffer holds the body");
        let records = body.slice(2..);
        drop(body);
        assert_eq!(pool.counts(), (0, 0), "a slice of the body still holds it");
        drop(records);
        assert_eq!(pool.counts(), (1, 0), "back in the pool");

        let other = read_frame(&mut reader, fetch.len(), &pool).await.unwrap();
        assert_eq!((&other[..], pool.counts()), (&fetch[..], (1, 0)));
        let larger = read_frame(&mut reader, large.len(), &pool).await.unwrap();
        assert_eq!((&larger[..], pool.counts()), (&large[..], (1, 0)));
        // The buffer again: the shorter body shows nothing of the one before.
        let again = read_frame(&mut reader, short.len(), &pool).await.unwrap();
        assert_eq!((&again[..], pool.counts()), (&short[..], (0, 0)));
    }

    /// A Produce served over a connection is read into a pooled buffer, which is back in
    /// the pool once the Produce is answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_served_produce_takes_a_pooled_buffer_and_gives_it_back() {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::{ProduceRequest, RequestHeader, TopicName};
        use kafka_protocol::protocol::{Encodable, StrBytes};
        let (broker, _dir) = broker_with("num.partitions", "1").await;
        broker.create_topic("t", 1, &Default::default()).await.unwrap();
        let pool = Arc::clone(&broker.state_for_tests().request_buffers);
        let records = sluice_wire::batch::build(0, crate::clock::now_ms(), &[b"v"]);
        let data = PartitionProduceData::default().with_index(0).with_records(Some(records.into()));
        let topic = TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![data]);
        let request = ProduceRequest::default().with_acks(-1).with_topic_data(vec![topic]);
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Produce as i16)
            .with_request_api_version(9)
            .with_correlation_id(7);
        let mut body = BytesMut::new();
        header.encode(&mut body, 2).unwrap();
        request.encode(&mut body, 9).unwrap();
        let mut client = TcpStream::connect(broker.local_addrs()[0]).await.unwrap();
        client.write_all(&(body.len() as i32).to_be_bytes()).await.unwrap();
        client.write_all(&body).await.unwrap();
        let mut size = [0u8; 4];
        client.read_exact(&mut size).await.unwrap();
        let mut reply = vec![0u8; i32::from_be_bytes(size) as usize];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(reply[..4], 7i32.to_be_bytes(), "the produce's answer");
        let (free, unallocated) = pool.counts();
        assert_eq!((free, unallocated), (1, REQUEST_BUFFERS - 1), "the one buffer taken is back");
        broker.shutdown().await.unwrap();
    }

    /// A connected pair: the broker's side as `write_replies` holds it, and the client's.
    async fn connection() -> (BufWriter<OwnedWriteHalf>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (_, writer) = server.into_split();
        (BufWriter::with_capacity(SOCKET_BUFFER_BYTES, writer), client)
    }

    /// A connected pair with 4 KiB socket buffers (the broker's side sending, the client's
    /// receiving), which a client that does not read fills at once; and the client's address.
    async fn small_buffered_connection() -> (OwnedWriteHalf, TcpStream, SocketAddr) {
        buffered_connection(4096, 4096).await
    }

    /// A connected pair whose broker side sends through `send` bytes of socket buffer and
    /// whose client receives into `receive`; and the client's address.
    async fn buffered_connection(
        send: u32,
        receive: u32,
    ) -> (OwnedWriteHalf, TcpStream, SocketAddr) {
        let listener = tokio::net::TcpSocket::new_v4().unwrap();
        listener.set_send_buffer_size(send).unwrap();
        listener.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = listener.listen(1).unwrap();
        let client = tokio::net::TcpSocket::new_v4().unwrap();
        client.set_recv_buffer_size(receive).unwrap();
        let client = client.connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        (server.into_split().1, client, peer)
    }

    /// Encoded bytes around the slice, twice: what a Fetch answer of two partitions sends.
    fn frame(slice: &LogSlice) -> Vec<Part<LogSlice>> {
        let bytes = |b: &'static [u8]| Part::Bytes(bytes::Bytes::from_static(b));
        vec![
            bytes(b"head"),
            Part::Records(slice.clone()),
            bytes(b"middle"),
            Part::Records(slice.clone()),
            bytes(b"tail"),
        ]
    }

    /// What `send_split` with `buffers` puts on a connection for [`frame`].
    async fn sent(slice: &LogSlice, buffers: &Arc<BufferPool>) -> Vec<u8> {
        let (mut writer, mut client) = connection().await;
        send_split(&mut writer, frame(slice), buffers, TEST_IDLE).await.unwrap();
        writer.flush().await.unwrap();
        drop(writer);
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        received
    }

    #[tokio::test]
    async fn fetched_records_arrive_whole_copied_in_chunks_or_by_sendfile() {
        let dir = tempfile::tempdir().unwrap();
        let (slice, bytes) = three_batches(dir.path());
        let expected = [&b"head"[..], &bytes, b"middle", &bytes, b"tail"].concat();
        // A buffer smaller than one batch: several reads and writes per slice.
        let small = Arc::new(BufferPool::new(1, 1000));
        assert_eq!(sent(&slice, &small).await, expected, "copied in 1000-byte chunks");
        assert_eq!(small.counts(), (1, 0), "its one buffer was used and given back");
        let large = Arc::new(BufferPool::new(1, 1 << 20));
        assert_eq!(sent(&slice, &large).await, expected, "one chunk per slice");
        assert_eq!(large.counts(), (1, 0));
        let none = Arc::new(BufferPool::new(0, 1 << 20));
        assert_eq!(sent(&slice, &none).await, expected, "sent with sendfile");
        // Every buffer in use: the next answer goes by sendfile, whole.
        let held = small.take().unwrap();
        assert_eq!(sent(&slice, &small).await, expected, "no buffer free");
        assert_eq!(small.counts(), (0, 0), "nothing was allocated past the limit");
        drop(held);
        assert_eq!(small.counts(), (1, 0));
    }

    #[tokio::test]
    async fn a_segment_cut_short_under_a_copied_slice_is_an_error_not_a_short_frame() {
        let dir = tempfile::tempdir().unwrap();
        let (slice, bytes) = three_batches(dir.path());
        let segment = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "log"))
            .unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&segment).unwrap();
        file.set_len(slice.position + bytes.len() as u64 - 100).unwrap();
        let (mut writer, _client) = connection().await;
        let buffers = Arc::new(BufferPool::new(1, 1000));
        let error = send_split(&mut writer, frame(&slice), &buffers, TEST_IDLE).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(error.to_string().contains("ended before the fetched batches"), "{error}");
        assert_eq!(buffers.counts(), (1, 0), "the buffer went back to the pool");
    }

    #[tokio::test]
    async fn a_consumer_that_stops_reading_gives_its_buffer_back_and_still_gets_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (slice, bytes) = batches_of(dir.path(), &[200_000, 300_000, 100_000]);
        let expected = [&b"head"[..], &bytes, b"middle", &bytes, b"tail"].concat();
        // Small socket buffers on both sides, so the answer cannot fit in them.
        let (writer, mut client, _) = small_buffered_connection().await;
        let mut writer = BufWriter::with_capacity(SOCKET_BUFFER_BYTES, writer);
        let buffers = Arc::new(BufferPool::new(1, 1 << 20));
        let pool = Arc::clone(&buffers);
        let sending = tokio::spawn(async move {
            send_split(&mut writer, frame(&slice), &pool, TEST_IDLE).await.unwrap();
            writer.flush().await.unwrap();
        });
        // The client reads nothing: the send stalls, and the buffer goes back meanwhile.
        let wait = Duration::from_millis(FETCH_COPY_WRITE_WAIT_MS);
        tokio::time::sleep(wait * 6).await;
        assert!(!sending.is_finished(), "the answer does not fit the sockets' buffers");
        assert_eq!(buffers.counts(), (1, 0), "no buffer held while the consumer does not read");
        let mut received = vec![0u8; expected.len()];
        client.read_exact(&mut received).await.unwrap();
        assert_eq!(received, expected, "copied and sent bytes make the whole answer, in order");
        sending.await.unwrap();
        assert_eq!(buffers.counts(), (1, 0));
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_its_replies_is_let_go_after_the_idle_limit() {
        let (writer, _client, peer) = small_buffered_connection().await;
        let (replies, queued) = mpsc::channel(4);
        let buffers = Arc::new(BufferPool::new(1, 1 << 20));
        let idle = Duration::from_millis(200);
        let writing = tokio::spawn(write_replies(writer, queued, buffers, peer, idle));
        let held = Arc::new(Semaphore::new(1)).acquire_owned().await.unwrap();
        let frame = BytesMut::from(&vec![7u8; 4 << 20][..]);
        replies.send((Reply::Frame(frame), held)).await.unwrap();
        // The client never reads and never closes: the writer gives up all the same, and the
        // reader, waiting on the queue, sees it gone.
        tokio::time::timeout(Duration::from_secs(10), writing).await.unwrap().unwrap();
        assert!(replies.is_closed(), "the queue is closed for the connection's reader");
    }

    #[tokio::test]
    async fn a_slow_client_that_keeps_reading_gets_a_reply_longer_than_the_idle_limit() {
        let (writer, mut client, peer) = buffered_connection(64 << 10, 256 << 10).await;
        let (replies, queued) = mpsc::channel(4);
        let buffers = Arc::new(BufferPool::new(1, 1 << 20));
        let idle = Duration::from_millis(500);
        let writing = tokio::spawn(write_replies(writer, queued, buffers, peer, idle));
        let held = Arc::new(Semaphore::new(1)).acquire_owned().await.unwrap();
        let frame: Vec<u8> = (0..(4u32 << 20)).map(|i| (i % 251) as u8).collect();
        replies.send((Reply::Frame(BytesMut::from(&frame[..])), held)).await.unwrap();
        // 64 KiB every 40 ms: the whole reply takes several times the idle limit, but the
        // client never leaves the writer waiting that long.
        let started = tokio::time::Instant::now();
        let mut received = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        while received.len() < frame.len() {
            tokio::time::sleep(Duration::from_millis(40)).await;
            let n = client.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the connection was closed after {} bytes", received.len());
            received.extend_from_slice(&chunk[..n]);
        }
        assert!(started.elapsed() > idle * 3, "the reply outlasted the idle limit");
        assert!(received == frame, "the whole reply, in order");
        drop(replies);
        writing.await.unwrap();
    }

    /// `connections.max.idle.ms` for the tests that do not test it.
    const TEST_IDLE: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn a_client_that_stops_reading_its_replies_frees_its_connection_slot() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::BrokerConfig::new(dir.path());
        config.set("listeners", "PLAINTEXT://127.0.0.1:0");
        config.set("connections.max.idle.ms", "300");
        config.set("max.connections", "1");
        let broker = crate::Broker::start(config).await.unwrap();
        let addr = broker.local_addrs()[0];
        // ApiVersions v0: key 18, version 0, correlation id 1, null client id.
        let request = [0u8, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff];
        let stuck = tokio::net::TcpSocket::new_v4().unwrap();
        stuck.set_recv_buffer_size(4096).unwrap();
        let mut stuck = stuck.connect(addr).await.unwrap();
        // Thousands of pipelined requests whose replies it never reads (written from a task:
        // the broker stops reading them once its reply queue is full).
        let pipelined = request.repeat(20_000);
        let _writing = tokio::spawn(async move {
            let _ = stuck.write_all(&pipelined).await;
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        // The one connection slot comes free: a new client is answered.
        let started = tokio::time::Instant::now();
        loop {
            let mut next = TcpStream::connect(addr).await.unwrap();
            next.write_all(&request).await.unwrap();
            let mut size = [0u8; 4];
            let read = tokio::time::timeout(Duration::from_secs(1), next.read_exact(&mut size));
            if matches!(read.await, Ok(Ok(_))) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(15), "the stuck client kept its slot");
        }
        broker.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_budget_below_the_frame_limit_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::BrokerConfig::new(dir.path());
        config.set("queued.max.request.bytes", "1000");
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("queued.max.request.bytes"), "{error}");
    }
}
