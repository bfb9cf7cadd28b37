//! The TCP server: accepts connections up to `max.connections` and serves each one.
//!
//! A connection is served one request at a time, in order, as Kafka does (it mutes a
//! channel until its response is sent): responses therefore leave in request order even
//! when clients pipeline. Writes are buffered and flushed when no further whole request is
//! already waiting, so a pipelined burst costs one flush.
//!
//! Bad input never panics and never affects another connection: a bad size prefix, a
//! truncated header, an unknown API key, an unsupported version or an undecodable body is
//! logged once (one line, at WARN) and answered as Kafka answers it (KIP-511 for
//! ApiVersions) or by closing that connection.
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::messages::ApiKey;
use sluice_wire::{frame, request, response, Error as WireError};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::handlers::{self, Reply};
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

/// True when `buffered` starts with at least one whole frame.
fn has_whole_frame(buffered: &[u8]) -> bool {
    let Some(prefix) = buffered.get(..4).and_then(|p| <[u8; 4]>::try_from(p).ok()) else {
        return false;
    };
    let size = i32::from_be_bytes(prefix);
    size >= 0 && buffered.len() >= 4 + size as usize
}

async fn serve(state: Arc<State>, stream: TcpStream, peer: SocketAddr, budget: Arc<Semaphore>) {
    let (reader, writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(SOCKET_BUFFER_BYTES, reader);
    let mut writer = BufWriter::with_capacity(SOCKET_BUFFER_BYTES, writer);
    let mut shutdown = state.shutdown.subscribe();
    loop {
        let mut prefix = [0u8; 4];
        let idle = std::time::Duration::from_millis(state.settings.connection_idle_ms_max);
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
        }
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
        let Ok(_held) = Arc::clone(&budget).acquire_many_owned(units).await else { return };
        let mut body = BytesMut::zeroed(size);
        // A client that announces a frame and stops sending must not hold its share of the
        // budget for ever: the body gets the idle timeout too.
        match tokio::time::timeout(idle, reader.read_exact(&mut body)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::warn!(%peer, size, "closing connection: request body not received within connections.max.idle.ms");
                return;
            }
        }
        let reply = match request::decode(body.freeze()) {
            Ok(request) => handlers::handle(&state, request, peer).await,
            Err(error) => match refuse(peer, error) {
                Some(frame) => Reply::Frame(frame),
                None => Reply::Close,
            },
        };
        match reply {
            Reply::Frame(frame) => {
                if writer.write_all(&frame).await.is_err() {
                    return;
                }
            }
            Reply::Nothing => {}
            Reply::Close => {
                let _ = writer.flush().await;
                return;
            }
        }
        if !has_whole_frame(reader.buffer()) && writer.flush().await.is_err() {
            return;
        }
    }
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

    #[tokio::test]
    async fn a_budget_below_the_frame_limit_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::BrokerConfig::new(dir.path());
        config.set("queued.max.request.bytes", "1000");
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("queued.max.request.bytes"), "{error}");
    }

    #[test]
    fn whole_frame_detection() {
        assert!(!has_whole_frame(&[0, 0]));
        assert!(!has_whole_frame(&[0, 0, 0, 2, 1]));
        assert!(has_whole_frame(&[0, 0, 0, 2, 1, 2]));
    }
}
