//! A tiny blocking Kafka TCP client that sends exactly the bytes a test asks for.
//!
//! Real clients refuse to send a bogus frame size, a truncated request or an unknown API key,
//! so bad-input and pipelining tests use [`RawConn`]. It frames nothing it is not told to:
//! [`RawConn::send_frame`] adds the 4-byte big-endian size prefix, [`RawConn::send_raw`] adds
//! nothing. Well-formed requests are encoded with the `kafka-protocol` crate
//! ([`encode_request`]); headers for API keys that crate does not know are built by hand
//! ([`request_header_v1`], [`request_header_v2`]).
//!
//! Wire layout (<https://kafka.apache.org/protocol.html#protocol_common>):
//! a frame is `size: i32` then `size` bytes. Request header v1 is `api_key: i16,
//! api_version: i16, correlation_id: i32, client_id: nullable string (i16 length)`; v2 adds
//! tagged fields (an unsigned varint count, 0 here). Response header v0 is `correlation_id: i32`;
//! v1 adds tagged fields. ApiVersions responses always use header v0 (KIP-511).
//!
//! Limits: reads never accept a frame above [`RESPONSE_BYTES_MAX`], and every read takes a
//! timeout, so a silent broker fails a test instead of hanging it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes};
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::{Decodable, HeaderVersion, Request};

use crate::limits::{CONNECT_TIMEOUT, RESPONSE_BYTES_MAX};

/// The `client_id` testkit puts in request headers, so broker logs name the test client.
pub const CLIENT_ID: &str = "sluice-testkit";

/// One blocking TCP connection to a Kafka listener.
#[derive(Debug)]
pub struct RawConn {
    /// The connection; `TCP_NODELAY` is set so small frames leave at once.
    stream: TcpStream,
}

impl RawConn {
    /// Connects to the first address `addr` resolves to, waiting at most [`CONNECT_TIMEOUT`].
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<RawConn> {
        let addr: SocketAddr = addr.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the address resolved to nothing")
        })?;
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        stream.set_nodelay(true)?;
        Ok(RawConn { stream })
    }

    /// This end's address: the peer address the broker sees and logs for this connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr()
    }

    /// Writes one frame: `body.len()` as a big-endian `i32`, then `body`.
    pub fn send_frame(&mut self, body: &[u8]) -> io::Result<()> {
        let size = i32::try_from(body.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a frame body of {} bytes does not fit the i32 size prefix", body.len()),
            )
        })?;
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&size.to_be_bytes());
        frame.extend_from_slice(body);
        self.send_raw(&frame)
    }

    /// Writes `bytes` as they are: no size prefix, no checks.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Encodes `request` at `version` with a header for `correlation_id` and sends the frame.
    pub fn send_request<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        correlation_id: i32,
    ) -> io::Result<()> {
        let body = encode_request(request, version, correlation_id)?;
        self.send_frame(&body)
    }

    /// Reads one frame body within `timeout`. Returns `Ok(None)` when the peer closed the
    /// connection cleanly before a new frame began; a close mid-frame is `UnexpectedEof`, and
    /// no frame within `timeout` is `TimedOut`.
    pub fn read_frame(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        let mut size_bytes = [0u8; 4];
        if !self.read_exact_by(&mut size_bytes, deadline)? {
            return Ok(None);
        }
        let size = i32::from_be_bytes(size_bytes);
        let size = usize::try_from(size)
            .ok()
            .filter(|size| *size <= RESPONSE_BYTES_MAX)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("response size {size} is outside 0..={RESPONSE_BYTES_MAX}"),
                )
            })?;
        let mut body = vec![0u8; size];
        if !self.read_exact_by(&mut body, deadline)? && size > 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed inside a frame"));
        }
        Ok(Some(body))
    }

    /// Reads the response to a request sent at `version`, returning its correlation id and body.
    /// A closed connection is `UnexpectedEof`.
    pub fn read_response<R: Request>(
        &mut self,
        version: i16,
        timeout: Duration,
    ) -> io::Result<(i32, R::Response)> {
        let frame = self.read_frame(timeout)?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "the broker closed the connection")
        })?;
        decode_response::<R>(&frame, version)
    }

    /// Sends `request` and reads its response, checking the correlation id matches.
    pub fn round_trip<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        correlation_id: i32,
        timeout: Duration,
    ) -> io::Result<R::Response> {
        self.send_request(request, version, correlation_id)?;
        let (got, response) = self.read_response::<R>(version, timeout)?;
        if got != correlation_id {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("sent correlation id {correlation_id}, the response has {got}"),
            ));
        }
        Ok(response)
    }

    /// Waits up to `timeout` for the broker to close the connection without sending a frame.
    /// A reset counts as closed: Linux answers with RST when the broker closes a socket that
    /// still holds unread request bytes. A frame instead is `InvalidData`; silence is `TimedOut`.
    pub fn expect_closed(&mut self, timeout: Duration) -> io::Result<()> {
        match self.read_frame(timeout) {
            Ok(None) => Ok(()),
            Ok(Some(frame)) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected a closed connection, got a {}-byte frame", frame.len()),
            )),
            Err(error) if is_closed_error(&error) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Closes the write half: the broker sees EOF after the bytes sent so far.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }

    /// Fills `buf` before `deadline`. Returns `Ok(false)` on EOF before the first byte, and
    /// `UnexpectedEof` on EOF after it.
    fn read_exact_by(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<bool> {
        let mut filled = 0;
        while filled < buf.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no response in time"));
            }
            self.stream.set_read_timeout(Some(left))?;
            let rest = buf.get_mut(filled..).expect("filled < buf.len() by the loop condition");
            match self.stream.read(rest) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed mid-read"))
                }
                Ok(count) => filled += count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if is_timeout(&error) => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "no response in time"))
                }
                Err(error) => return Err(error),
            }
        }
        Ok(true)
    }
}

/// Whether `error` means the peer closed or reset the connection.
pub fn is_closed_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// A socket read timeout shows up as `WouldBlock` or `TimedOut` depending on the platform.
fn is_timeout(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// Request header v1: `api_key, api_version, correlation_id, client_id` (`None` encodes a null
/// string). Built by hand so any `api_key`, known or not, can be sent.
pub fn request_header_v1(
    api_key: i16,
    api_version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
) -> Vec<u8> {
    let mut header = Vec::with_capacity(10 + client_id.map_or(0, str::len));
    header.put_i16(api_key);
    header.put_i16(api_version);
    header.put_i32(correlation_id);
    match client_id {
        Some(client_id) => {
            let len = i16::try_from(client_id.len()).expect("test client ids are short");
            header.put_i16(len);
            header.put_slice(client_id.as_bytes());
        }
        None => header.put_i16(-1),
    }
    header
}

/// Request header v2: v1 followed by an empty tagged-field section. The client id stays a
/// non-compact string even in flexible versions, as Kafka's header schema says.
pub fn request_header_v2(
    api_key: i16,
    api_version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
) -> Vec<u8> {
    let mut header = request_header_v1(api_key, api_version, correlation_id, client_id);
    header.put_u8(0);
    header
}

/// A request frame body (without the size prefix): the header version `R` needs at `version`,
/// with [`CLIENT_ID`], then the body encoded by `kafka-protocol`.
pub fn encode_request<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
) -> io::Result<Vec<u8>> {
    let mut body = match R::header_version(version) {
        0 => {
            let mut header = Vec::with_capacity(8);
            header.put_i16(R::KEY);
            header.put_i16(version);
            header.put_i32(correlation_id);
            header
        }
        1 => request_header_v1(R::KEY, version, correlation_id, Some(CLIENT_ID)),
        _ => request_header_v2(R::KEY, version, correlation_id, Some(CLIENT_ID)),
    };
    request.encode(&mut body, version).map_err(invalid_input)?;
    Ok(body)
}

/// Splits a response frame body into its correlation id and decoded response, using the
/// response header version `R::Response` has at `version`. Bytes left over after the body
/// are an error: they mean the broker encoded a different version than was asked for.
pub fn decode_response<R: Request>(frame: &[u8], version: i16) -> io::Result<(i32, R::Response)> {
    let mut buf = Bytes::copy_from_slice(frame);
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(&mut buf, header_version).map_err(invalid_data)?;
    let response = R::Response::decode(&mut buf, version).map_err(invalid_data)?;
    if !buf.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} bytes left after a v{version} response body", buf.len()),
        ));
    }
    Ok((header.correlation_id, response))
}

/// The correlation id at the start of any response frame (every response header starts
/// with it), or `None` if the frame is shorter than 4 bytes.
pub fn correlation_id(frame: &[u8]) -> Option<i32> {
    let bytes: [u8; 4] = frame.get(..4)?.try_into().ok()?;
    Some(i32::from_be_bytes(bytes))
}

fn invalid_input(error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{error:#}"))
}

fn invalid_data(error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{error:#}"))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;

    use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn builds_header_v1_and_v2_byte_for_byte() {
        let v1 = request_header_v1(9999, 7, 0x0102_0304, Some("ab"));
        assert_eq!(v1, [0x27, 0x0f, 0, 7, 1, 2, 3, 4, 0, 2, b'a', b'b']);
        let v2 = request_header_v2(18, 3, 1, None);
        assert_eq!(v2, [0, 18, 0, 3, 0, 0, 0, 1, 0xff, 0xff, 0]);
    }

    #[test]
    fn encodes_api_versions_v3_with_header_v2() {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("t"))
            .with_client_software_version(StrBytes::from_static_str("1"));
        let body = encode_request(&request, 3, 5).expect("ApiVersions v3 encodes");
        let header = request_header_v2(18, 3, 5, Some(CLIENT_ID));
        assert_eq!(body.get(..header.len()), Some(header.as_slice()));
    }

    /// Serves one connection: reads one frame, answers it with `reply`, then closes.
    fn serve_once(reply: Vec<u8>) -> (SocketAddr, thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("loopback binds");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let server = thread::spawn(move || {
            let (stream, _) = listener.accept().expect("the test connects");
            let mut conn = RawConn { stream };
            let request = conn.read_frame(TIMEOUT).expect("a frame").expect("not closed");
            conn.send_frame(&reply).expect("the client is still connected");
            request
        });
        (addr, server)
    }

    #[test]
    fn round_trips_a_request_and_sees_the_close() {
        let response = ApiVersionsResponse::default().with_error_code(35);
        let mut reply = 7i32.to_be_bytes().to_vec();
        response.encode(&mut reply, 0).expect("ApiVersions v0 encodes");
        let (addr, server) = serve_once(reply);
        let mut conn = RawConn::connect(addr).expect("the listener accepts");
        let got = conn
            .round_trip(&ApiVersionsRequest::default(), 0, 7, TIMEOUT)
            .expect("the server answers");
        assert_eq!(got.error_code, 35);
        let request = server.join().expect("the server thread does not panic");
        assert_eq!(correlation_id(request.get(4..).expect("a full header")), Some(7));
        conn.expect_closed(TIMEOUT).expect("the server closed after one reply");
    }

    #[test]
    fn rejects_a_response_with_the_wrong_correlation_id() {
        let mut reply = 8i32.to_be_bytes().to_vec();
        ApiVersionsResponse::default().encode(&mut reply, 0).expect("ApiVersions v0 encodes");
        let (addr, _server) = serve_once(reply);
        let mut conn = RawConn::connect(addr).expect("the listener accepts");
        let error = conn
            .round_trip(&ApiVersionsRequest::default(), 0, 7, TIMEOUT)
            .expect_err("correlation ids differ");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
    }

    #[test]
    fn times_out_on_silence() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("loopback binds");
        let mut conn = RawConn::connect(listener.local_addr().expect("bound")).expect("accepts");
        let error = conn.read_frame(Duration::from_millis(50)).expect_err("nobody answers");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
    }
}
