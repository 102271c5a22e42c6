//! The node's bounds on connections and on the work it takes on, as `serve` applies them.
//! `ServerLimits` carries them, so an operator or a test can change them; its defaults are
//! the constants of `cercle_limits`, which ARCHITECTURE.md (Limits) lists.

use std::time::Duration;

use cercle_limits::{
    CONNECTION_IDLE_TIMEOUT, CONNECTIONS_MAX, HTTP2_KEEPALIVE_INTERVAL, HTTP2_KEEPALIVE_TIMEOUT,
    REQUEST_TIMEOUT, STREAM_SEND_TIMEOUT, STREAMS_MAX, STREAMS_PER_KEY_MAX, TCP_KEEPALIVE_TIME,
};

/// The bounds `serve` applies; `ServerLimits::default()` has the constants of `cercle_limits`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    pub connections_max: usize,
    pub idle_timeout: Duration,
    /// Used as given when below half the idle timeout, else half of it, so that a live
    /// client is always pinged, and answers, before its connection counts as idle.
    pub http2_keepalive_interval: Duration,
    pub http2_keepalive_timeout: Duration,
    pub tcp_keepalive_time: Duration,
    pub request_timeout: Duration,
    pub streams_per_key_max: usize,
    pub streams_max: usize,
    pub stream_send_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            connections_max: CONNECTIONS_MAX,
            idle_timeout: CONNECTION_IDLE_TIMEOUT,
            http2_keepalive_interval: HTTP2_KEEPALIVE_INTERVAL,
            http2_keepalive_timeout: HTTP2_KEEPALIVE_TIMEOUT,
            tcp_keepalive_time: TCP_KEEPALIVE_TIME,
            request_timeout: REQUEST_TIMEOUT,
            streams_per_key_max: STREAMS_PER_KEY_MAX,
            streams_max: STREAMS_MAX,
            stream_send_timeout: STREAM_SEND_TIMEOUT,
        }
    }
}

impl ServerLimits {
    /// The HTTP/2 keep-alive interval applied (see the field).
    pub fn keepalive_interval(&self) -> Duration {
        self.http2_keepalive_interval.min(self.idle_timeout / 2)
    }
}
