//! The public listener without TLS: HTTP/1.1 and h2c with prior knowledge on one port,
//! told apart by a connection's first bytes, which must come within
//! [`FIRST_BYTES_WITHIN`].
//!
//! actix-web's own `listen_auto_h2c` waits for those bytes without a deadline: a client
//! that connects and sends nothing (a port scanner, a browser's preconnect, an attack
//! holding sockets) kept its connection, and its file descriptor, as long as it liked,
//! and held up a graceful stop for all of `server.shutdown_timeout_secs`. This is the
//! same service with that deadline; once the protocol is known, actix-http's own
//! timeouts apply (request head, keep-alive, disconnect), as they do behind
//! `HttpServer`.

use actix_http::error::DispatchError;
use actix_http::Protocol;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long a new connection may stay silent before it is closed.
pub(super) const FIRST_BYTES_WITHIN: Duration = Duration::from_secs(5);

/// The start of the HTTP/2 connection preface (RFC 9113 section 3.4): enough to tell it
/// from any HTTP/1 request line.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2";

/// Waits for a connection's first bytes (without reading them) and names its protocol;
/// a connection silent for [`FIRST_BYTES_WITHIN`], or still silent when the server
/// stops (`stopping`), is closed.
pub(super) async fn protocol_of(
    io: TcpStream,
    stopping: impl std::future::Future<Output = ()>,
) -> Result<(TcpStream, Protocol, Option<SocketAddr>), DispatchError> {
    let mut first = [0u8; H2_PREFACE.len()];
    tokio::select! {
        peeked = tokio::time::timeout(FIRST_BYTES_WITHIN, io.peek(&mut first)) => match peeked {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(DispatchError::Io(e)),
            Err(_) => return Err(DispatchError::SlowRequestTimeout),
        },
        () = stopping => return Err(DispatchError::DisconnectTimeout),
    }
    let protocol = if first == H2_PREFACE {
        Protocol::Http2
    } else {
        Protocol::Http1
    };
    let peer = io.peer_addr().ok();
    Ok((io, protocol, peer))
}
