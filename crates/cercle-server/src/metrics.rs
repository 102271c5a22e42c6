//! The node's metrics, in Prometheus text exposition, served at `/metrics` on a port of
//! their own (`serve`), apart from the gRPC port.
//!
//! Counters and histograms are updated where the work happens: operations accepted and
//! rejected (by reason) where the handlers answer (`service`), BUSY answers there and in
//! `admission` (requests refused unread), group sizes and `fdatasync` latency in the
//! writer's syncer, clearing solve time in the planner and the writer's hold time in the
//! executor. Gauges of what the node holds (log entries and bytes, accounts, open invoices)
//! are set by the syncer after each durable group; the queue depth is read from the
//! queue's free places when scraped. Nothing here is global: the node owns one `Metrics`
//! and hands it to its parts, so tests can run several nodes in one process.
//!
//! The HTTP server answers `GET /metrics` and nothing else (404), reads no body, keeps
//! at most `METRICS_CONNECTIONS_MAX` connections and gives each `METRICS_REQUEST_TIMEOUT`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::admission::QueueRoom;

use cercle_limits::{METRICS_CONNECTIONS_MAX, METRICS_REQUEST_TIMEOUT};
/// The proto package the node serves, as `--version` and `cercle_build_info` say.
pub const PROTO_PACKAGE: &str = cercle_proto::PROTO_PACKAGE;

/// Every metric the node exports.
pub struct Metrics {
    registry: Registry,
    pub operations_accepted: IntCounter,
    pub operations_duplicate: IntCounter,
    pub operations_rejected: IntCounterVec,
    pub busy_answers: IntCounterVec,
    pub group_entries: Histogram,
    pub log_sync_seconds: Histogram,
    pub writer_queue_depth: IntGauge,
    pub log_entries: IntGauge,
    pub log_bytes: IntGauge,
    pub accounts: IntGauge,
    pub open_invoices: IntGauge,
    pub clearing_solve_seconds: Histogram,
    pub clearing_hold_seconds: Histogram,
    pub startup_verification_seconds: Gauge,
    pub disk_full: IntGauge,
    pub build_info: IntGaugeVec,
    /// The writer's queue, read at each scrape for its depth.
    queue: std::sync::Mutex<Option<(QueueRoom, usize)>>,
}

/// Buckets in seconds for latencies from 100 µs to about 30 s.
fn latency_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.0001, 2.5, 14).unwrap_or_default()
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    // Names are fixed and distinct, so registering cannot fail; a failure would only
    // leave the metric out of the scrape.
    if let Err(e) = registry.register(Box::new(metric.clone())) {
        tracing::error!(error = %e, "cannot register a metric");
    }
    metric
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let r = Registry::new();
        let counter = |name: &str, help: &str| {
            register(&r, IntCounter::new(name, help).unwrap_or_else(|_| unreachable_metric()))
        };
        let gauge = |name: &str, help: &str| {
            register(&r, IntGauge::new(name, help).unwrap_or_else(|_| unreachable_metric()))
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            register(
                &r,
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                    .unwrap_or_else(|_| unreachable_metric()),
            )
        };
        let metrics = Metrics {
            operations_accepted: counter(
                "cercle_operations_accepted_total",
                "Operations accepted and written to the log (duplicates not counted).",
            ),
            operations_duplicate: counter(
                "cercle_operations_duplicate_total",
                "Operations sent again and answered with their original receipt.",
            ),
            operations_rejected: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "cercle_operations_rejected_total",
                        "Operations refused, by reason (a ledger reason code's name, or BUSY, DISK_FULL, UNAVAILABLE, INVALID_ARGUMENT, ...).",
                    ),
                    &["reason"],
                )
                .unwrap_or_else(|_| unreachable_metric()),
            ),
            busy_answers: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "cercle_busy_answers_total",
                        "Answers that the writer's queue was full: per operation, or per write request refused unread.",
                    ),
                    &["scope"],
                )
                .unwrap_or_else(|_| unreachable_metric()),
            ),
            group_entries: histogram(
                "cercle_writer_group_entries",
                "Entries written to the log per group (one write and one fdatasync).",
                prometheus::exponential_buckets(1.0, 2.0, 11).unwrap_or_default(),
            ),
            log_sync_seconds: histogram(
                "cercle_log_sync_seconds",
                "Time to write one group to the log and fdatasync it.",
                latency_buckets(),
            ),
            writer_queue_depth: gauge(
                "cercle_writer_queue_depth",
                "Operations holding a place in the writer's queue (admitted and not yet answered).",
            ),
            log_entries: gauge("cercle_log_entries", "Entries in the log (durable)."),
            log_bytes: gauge("cercle_log_bytes", "Bytes of the log file (durable records)."),
            accounts: gauge("cercle_accounts", "Accounts in the ledger."),
            open_invoices: gauge("cercle_open_invoices", "Invoices issued or accepted and not yet settled."),
            clearing_solve_seconds: histogram(
                "cercle_clearing_solve_seconds",
                "Time to solve and check a clearing run, away from the writer.",
                latency_buckets(),
            ),
            clearing_hold_seconds: histogram(
                "cercle_clearing_writer_hold_seconds",
                "Time the writer spends on a clearing run (checking and applying its record), holding up other writes.",
                latency_buckets(),
            ),
            startup_verification_seconds: register(
                &r,
                Gauge::new(
                    "cercle_startup_verification_seconds",
                    "Time start-up took to check the log and bring the state up to it.",
                )
                .unwrap_or_else(|_| unreachable_metric()),
            ),
            disk_full: gauge(
                "cercle_disk_full",
                "1 from a write refused for a full disk (or a start on one) until a write goes through again; reads are served meanwhile.",
            ),
            build_info: register(
                &r,
                IntGaugeVec::new(
                    Opts::new("cercle_build_info", "The node's version and the proto package it serves (always 1)."),
                    &["version", "proto_package"],
                )
                .unwrap_or_else(|_| unreachable_metric()),
            ),
            registry: r,
            queue: std::sync::Mutex::new(None),
        };
        metrics.build_info.with_label_values(&[env!("CARGO_PKG_VERSION"), PROTO_PACKAGE]).set(1);
        Arc::new(metrics)
    }

    /// Makes the scrape report the depth of this queue of `places` places.
    pub fn watch_queue(&self, room: QueueRoom, places: usize) {
        *self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((room, places));
    }

    /// Counts one operation's answer.
    pub fn count_outcome(&self, accepted: bool, duplicate: bool) {
        match (accepted, duplicate) {
            (true, false) => self.operations_accepted.inc(),
            (true, true) => self.operations_duplicate.inc(),
            (false, _) => {}
        }
    }

    /// Counts one operation refused for `reason`.
    pub fn count_rejected(&self, reason: &str) {
        self.operations_rejected.with_label_values(&[reason]).inc();
        if reason == "BUSY" {
            self.busy_answers.with_label_values(&["operation"]).inc();
        }
    }

    /// Counts a write request refused unread (every place of the queue taken).
    pub fn count_request_refused(&self) {
        self.busy_answers.with_label_values(&["request"]).inc();
    }

    /// The scrape: every metric in the text exposition format.
    pub fn render(&self) -> String {
        if let Some((room, places)) = &*self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            self.writer_queue_depth.set(places.saturating_sub(room.free()) as i64);
        }
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Metric names and options here are constants that the tests render; building one
/// cannot fail at run time.
#[cold]
fn unreachable_metric<T>() -> T {
    panic!("a metric of constant name and options could not be built")
}

/// Why the metrics endpoint cannot start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr}: {source}")]
pub struct ListenError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Binds the metrics address: a port taken is an error here, at start, naming it.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr).await.map_err(|source| ListenError { addr, source })
}

/// Serves `GET /metrics` on `listener` until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use hyper::server::conn::http1;
    use hyper_util::rt::TokioIo;
    let places = Arc::new(Semaphore::new(METRICS_CONNECTIONS_MAX));
    loop {
        let place = tokio::select! {
            place = places.clone().acquire_owned() => match place { Ok(p) => p, Err(_) => return },
            _ = stop.changed() => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "cannot accept a metrics connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _place = place;
            let service =
                hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&request, &metrics)) }
                });
            let connection =
                http1::Builder::new().keep_alive(false).serve_connection(TokioIo::new(stream), service);
            if let Ok(Err(e)) = tokio::time::timeout(METRICS_REQUEST_TIMEOUT, connection).await {
                tracing::debug!(error = %e, "a metrics connection failed");
            }
        });
    }
}

fn answer<B>(
    request: &hyper::Request<B>,
    metrics: &Metrics,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let (status, content_type, body) = if request.uri().path() != "/metrics" {
        (hyper::StatusCode::NOT_FOUND, "text/plain", "not found: the metrics are at /metrics\n".to_string())
    } else if request.method() != hyper::Method::GET && request.method() != hyper::Method::HEAD {
        (hyper::StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET /metrics\n".to_string())
    } else {
        (hyper::StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", metrics.render())
    };
    let mut response = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_rendered_with_its_help_and_type() {
        let metrics = Metrics::new();
        metrics.count_rejected("CREDIT_LIMIT_EXCEEDED");
        metrics.count_rejected("BUSY");
        metrics.count_request_refused();
        let text = metrics.render();
        for name in [
            "cercle_operations_accepted_total",
            "cercle_operations_duplicate_total",
            "cercle_operations_rejected_total",
            "cercle_busy_answers_total",
            "cercle_writer_group_entries",
            "cercle_log_sync_seconds",
            "cercle_writer_queue_depth",
            "cercle_log_entries",
            "cercle_log_bytes",
            "cercle_accounts",
            "cercle_open_invoices",
            "cercle_clearing_solve_seconds",
            "cercle_clearing_writer_hold_seconds",
            "cercle_startup_verification_seconds",
            "cercle_build_info",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} is not in the scrape:\n{text}");
        }
        assert!(text.contains("cercle_operations_rejected_total{reason=\"CREDIT_LIMIT_EXCEEDED\"} 1"));
        assert!(text.contains("cercle_busy_answers_total{scope=\"operation\"} 1"));
        assert!(text.contains("cercle_busy_answers_total{scope=\"request\"} 1"));
        assert!(text.contains(&format!(
            "cercle_build_info{{proto_package=\"{PROTO_PACKAGE}\",version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
    }
}
