//! Accepting connections within bounds: the accept loop that feeds the gRPC server, and
//! the connection that closes itself when its peer sends nothing.
//!
//! The loop holds one place (of `ServerLimits::connections_max`) per open connection, so
//! past the bound new connections wait in the listen backlog instead of taking file
//! descriptors. When `accept` fails for want of resources (EMFILE, ENFILE, ENOBUFS,
//! ENOMEM), the loop waits before trying again (`ACCEPT_BACKOFF_START`, doubling up to
//! `ACCEPT_BACKOFF_MAX`) and logs once per burst of failures, instead of spinning on an
//! error that only a closed connection can clear. Each accepted socket gets TCP_NODELAY
//! and TCP keep-alive, and is wrapped in an `IdleTimeout`, which fails the read of a
//! connection that sent no byte for `ServerLimits::idle_timeout`, so that hyper closes it
//! (hyper has no timeout for a client that never completes the HTTP/2 handshake).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo};

use cercle_limits::{
    ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_START, ACCEPTED_WAITING_MAX, TCP_KEEPALIVE_INTERVAL,
    TCP_KEEPALIVE_RETRIES,
};

use crate::limits::ServerLimits;

/// The connections accepted on `listener`, as the gRPC server's incoming stream. The accept
/// loop runs in a task of its own, and stops (closing the listener) when the stream is
/// dropped.
pub fn incoming(
    listener: TcpListener,
    limits: &ServerLimits,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<IdleTimeout>> {
    let (tx, rx) = mpsc::channel(ACCEPTED_WAITING_MAX);
    let places = Arc::new(Semaphore::new(limits.connections_max));
    tokio::spawn(accept_loop(listener, places, limits.clone(), tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    places: Arc<Semaphore>,
    limits: ServerLimits,
    tx: mpsc::Sender<io::Result<IdleTimeout>>,
) {
    let mut failures: u64 = 0;
    let mut backoff = ACCEPT_BACKOFF_START;
    // Logged once each time the limit is reached, not for every connection past it.
    let mut at_limit = false;
    loop {
        let place = match places.clone().try_acquire_owned() {
            Ok(place) => {
                at_limit = false;
                place
            }
            Err(_) => {
                if !at_limit {
                    tracing::warn!(
                        connections_max = limits.connections_max,
                        "at the connection limit: new connections wait until one closes"
                    );
                    at_limit = true;
                }
                tokio::select! {
                    place = places.clone().acquire_owned() => match place {
                        Ok(place) => place,
                        Err(_) => return,
                    },
                    () = tx.closed() => return,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tx.closed() => return,
        };
        match accepted {
            Ok((stream, _peer)) => {
                if failures > 0 {
                    tracing::info!(failures, "accepting connections again");
                    failures = 0;
                    backoff = ACCEPT_BACKOFF_START;
                }
                configure(&stream, &limits);
                let connection = IdleTimeout::new(stream, limits.idle_timeout, place);
                if tx.send(Ok(connection)).await.is_err() {
                    return;
                }
            }
            // The connection failed before it was accepted: the next one may be fine.
            Err(e) if is_connection_error(&e) => {
                tracing::debug!(error = %e, "a connection failed before it was accepted");
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(
                        error = %e,
                        "cannot accept connections (out of file descriptors?); retrying with a backoff \
                         until one closes"
                    );
                }
                failures += 1;
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = tx.closed() => return,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}

/// Errors of one connection, which say nothing about the next.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// TCP_NODELAY (requests are small and answered at once) and TCP keep-alive. A socket
/// that refuses them is served all the same.
fn configure(stream: &TcpStream, limits: &ServerLimits) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let keepalive = TcpKeepalive::new()
        .with_time(limits.tcp_keepalive_time)
        .with_interval(TCP_KEEPALIVE_INTERVAL)
        .with_retries(TCP_KEEPALIVE_RETRIES);
    if let Err(e) = SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "cannot set TCP keep-alive");
    }
}

/// An accepted connection whose read fails (TimedOut) once its peer has sent no byte for
/// `timeout`. Holds the connection's place until dropped.
pub struct IdleTimeout {
    stream: TcpStream,
    timeout: Duration,
    /// When the last byte was read.
    last_read: Instant,
    /// Fires at `last_read + timeout` or earlier; moved on when it fires early.
    timer: Pin<Box<Sleep>>,
    _place: OwnedSemaphorePermit,
}

impl IdleTimeout {
    fn new(stream: TcpStream, timeout: Duration, place: OwnedSemaphorePermit) -> IdleTimeout {
        let now = Instant::now();
        IdleTimeout {
            stream,
            timeout,
            last_read: now,
            timer: Box::pin(tokio::time::sleep_until(now + timeout)),
            _place: place,
        }
    }
}

impl AsyncRead for IdleTimeout {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let filled = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > filled {
                    // The timer is not reset on every read (that costs a timer-wheel update
                    // per read); it is moved on when it fires before the real deadline.
                    this.last_read = Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => loop {
                if this.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let deadline = this.last_read + this.timeout;
                if deadline <= Instant::now() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no byte received for {} ms", this.timeout.as_millis()),
                    )));
                }
                this.timer.as_mut().reset(deadline);
            },
        }
    }
}

impl AsyncWrite for IdleTimeout {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl Connected for IdleTimeout {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_stream::StreamExt;

    /// How long a test waits for what must happen.
    const DEADLINE: Duration = Duration::from_secs(10);

    /// Past the connection limit, a connection is accepted only once another has closed.
    #[tokio::test]
    async fn past_the_limit_a_connection_waits_for_another_to_close() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ServerLimits { connections_max: 1, ..ServerLimits::default() };
        let mut accepted = incoming(listener, &limits);
        let _first_peer = TcpStream::connect(addr).await.unwrap();
        let _second_peer = TcpStream::connect(addr).await.unwrap();
        let first = tokio::time::timeout(DEADLINE, accepted.next()).await.unwrap().unwrap().unwrap();
        // While the first is open, the second waits (for a while that proves nothing on
        // its own; the accept after the close below proves the loop was still there).
        let waited = tokio::time::timeout(Duration::from_millis(200), accepted.next()).await;
        assert!(waited.is_err(), "a connection past the limit was accepted");
        drop(first);
        let second = tokio::time::timeout(DEADLINE, accepted.next()).await.unwrap().unwrap();
        assert!(second.is_ok());
    }

    /// A peer that sends a byte then nothing is cut off once the timeout has passed since
    /// that byte; the place is given back when the connection is dropped.
    #[tokio::test]
    async fn a_silent_peer_is_cut_off_after_the_idle_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ServerLimits { idle_timeout: Duration::from_millis(300), ..ServerLimits::default() };
        let mut peer = TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let places = Arc::new(Semaphore::new(1));
        let place = places.clone().try_acquire_owned().unwrap();
        let mut connection = IdleTimeout::new(stream, limits.idle_timeout, place);
        // Silent for a part of the timeout, then one byte: the timeout counts from it.
        tokio::time::sleep(limits.idle_timeout / 2).await;
        peer.write_all(b"x").await.unwrap();
        let mut byte = [0u8; 1];
        connection.read_exact(&mut byte).await.unwrap();
        let read_at = Instant::now();
        let error = connection.read(&mut byte).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(Instant::now() >= read_at + limits.idle_timeout);
        assert_eq!(places.available_permits(), 0);
        drop(connection);
        assert_eq!(places.available_permits(), 1);
    }
}
