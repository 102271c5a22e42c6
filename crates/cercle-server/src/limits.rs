//! The node's bounds on connections and on the work it takes on, with their defaults.
//! `ServerLimits` carries them to `serve`, so an operator or a test can change them; the
//! constants are the defaults, and ARCHITECTURE.md (Limits) lists them.

use std::time::Duration;

/// Most connections open at once. Each holds a place until it closes; past the bound, new
/// connections wait in the listen backlog. Set `RLIMIT_NOFILE` above it (the node warns at
/// start when it is not): running out of file descriptors is survived (see `net`), but
/// new connections then wait for old ones to close.
pub const CONNECTIONS_MAX: usize = 4096;
/// A connection that sends no byte for this long is closed: it never started HTTP/2, or
/// its peer is gone. A live client answers the node's keep-alive pings, which counts.
pub const CONNECTION_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The node pings a connection (HTTP/2 PING) it has received nothing from for this long...
pub const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// ...and closes it when the answer does not come within this.
pub const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP keep-alive: the kernel probes a silent connection after this long,
pub const TCP_KEEPALIVE_TIME: Duration = Duration::from_secs(60);
/// then every this long,
pub const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// and drops it after this many probes without an answer.
pub const TCP_KEEPALIVE_RETRIES: u32 = 3;
/// After an error accepting a connection (EMFILE: out of file descriptors), the accept
/// loop waits this long before trying again, doubling the wait up to `ACCEPT_BACKOFF_MAX`.
pub const ACCEPT_BACKOFF_START: Duration = Duration::from_millis(10);
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Longest a request may take to be answered (for a stream: to start).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Most `StreamEntries` streams one key may have open at once.
pub const STREAMS_PER_KEY_MAX: usize = 4;
/// Most `StreamEntries` streams open at once, all keys together.
pub const STREAMS_MAX: usize = 32;
/// A stream whose client reads nothing for this long is ended (DEADLINE_EXCEEDED).
pub const STREAM_SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// The bounds `serve` applies; `ServerLimits::default()` has the constants above.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::{STREAM_BUFFER_ENTRIES, STREAM_CHUNK_BYTES_MAX, STREAM_CHUNK_ENTRIES};
    use crate::writer::WRITE_QUEUE_MAX;

    /// ARCHITECTURE.md, with every run of white space made one space.
    fn architecture() -> String {
        include_str!("../../../ARCHITECTURE.md").split_whitespace().collect::<Vec<_>>().join(" ")
    }

    fn count(n: usize) -> String {
        let digits = n.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    }

    fn duration(d: Duration) -> String {
        if d < Duration::from_secs(1) {
            format!("{} ms", d.as_millis())
        } else {
            format!("{} s", d.as_secs())
        }
    }

    /// The Limits section states each bound with its value, just before its name.
    #[test]
    fn architecture_md_states_every_bound_with_its_value() {
        let doc = architecture();
        let check = |value: String, name: &str| {
            let at = doc
                .find(&format!("(`{name}`"))
                .unwrap_or_else(|| panic!("ARCHITECTURE.md does not name {name}"));
            let mut before: Vec<char> = doc[..at].chars().rev().take(40).collect();
            before.reverse();
            let before: String = before.into_iter().collect();
            assert!(before.contains(&value), "ARCHITECTURE.md gives {name} as {before:?}, not {value}");
        };
        check(count(WRITE_QUEUE_MAX), "WRITE_QUEUE_MAX");
        check(duration(REQUEST_TIMEOUT), "REQUEST_TIMEOUT");
        check(count(CONNECTIONS_MAX), "CONNECTIONS_MAX");
        check(duration(CONNECTION_IDLE_TIMEOUT), "CONNECTION_IDLE_TIMEOUT");
        check(duration(HTTP2_KEEPALIVE_INTERVAL), "HTTP2_KEEPALIVE_INTERVAL");
        check(duration(HTTP2_KEEPALIVE_TIMEOUT), "HTTP2_KEEPALIVE_TIMEOUT");
        check(duration(TCP_KEEPALIVE_TIME), "TCP_KEEPALIVE_TIME");
        check(duration(TCP_KEEPALIVE_INTERVAL), "TCP_KEEPALIVE_INTERVAL");
        check(TCP_KEEPALIVE_RETRIES.to_string(), "TCP_KEEPALIVE_RETRIES");
        check(duration(ACCEPT_BACKOFF_START), "ACCEPT_BACKOFF_START");
        check(duration(ACCEPT_BACKOFF_MAX), "ACCEPT_BACKOFF_MAX");
        check(count(STREAMS_PER_KEY_MAX), "STREAMS_PER_KEY_MAX");
        check(count(STREAMS_MAX), "STREAMS_MAX");
        check(duration(STREAM_SEND_TIMEOUT), "STREAM_SEND_TIMEOUT");
        check(count(STREAM_CHUNK_ENTRIES as usize), "STREAM_CHUNK_ENTRIES");
        check(format!("{} MiB", STREAM_CHUNK_BYTES_MAX >> 20), "STREAM_CHUNK_BYTES_MAX");
        check(count(STREAM_BUFFER_ENTRIES), "STREAM_BUFFER_ENTRIES");
    }
}
