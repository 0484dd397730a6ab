//! The process's metrics, in one registry every crate records into and `GET /metrics` renders
//! in Prometheus' text format. Labels are route templates, modes, outcomes and channels: never a
//! value of a request (a person's number is part of some paths).

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Seconds, from 1 ms to about 33 s in doublings.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Counts, from 1 to 32,768 in doublings.
fn sizes() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    request_seconds: Histograms,
    in_flight: Gauge,
    query_seconds: Histograms,
    ingest_seconds: Histograms,
    log_commit_seconds: Histogram,
    log_group_entries: Histogram,
    cache: Family<Labels, Counter>,
    connector_runs: Family<Labels, Counter>,
    recoveries: Counter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("tverr");
    let requests = Family::<Labels, Counter>::default();
    registry.register("http_requests", "HTTP requests answered, by route template, method and status", requests.clone());
    let request_seconds = Histograms::new_with_constructor(seconds);
    registry.register(
        "http_request_duration_seconds",
        "Time to the response's head, by route template and method",
        request_seconds.clone(),
    );
    let in_flight = Gauge::default();
    registry.register("http_requests_in_flight", "Requests being answered", in_flight.clone());
    let query_seconds = Histograms::new_with_constructor(seconds);
    registry.register(
        "query_duration_seconds",
        "Reads through the door, from the intent to the last row, by status",
        query_seconds.clone(),
    );
    let ingest_seconds = Histograms::new_with_constructor(seconds);
    registry.register(
        "ingest_duration_seconds",
        "Writes of a dataset, from the lock to the recorded version, by mode and outcome",
        ingest_seconds.clone(),
    );
    let log_commit_seconds = seconds();
    registry.register("access_log_commit_seconds", "Time of one group commit of the access log", log_commit_seconds.clone());
    let log_group_entries = sizes();
    registry.register("access_log_group_entries", "Entries written by one group commit of the access log", log_group_entries.clone());
    let cache = Family::<Labels, Counter>::default();
    registry.register("cache_lookups", "Look-ups in the process's caches, by cache and outcome (hit or miss)", cache.clone());
    let connector_runs = Family::<Labels, Counter>::default();
    registry.register("connector_runs", "Connector runs, by outcome", connector_runs.clone());
    let recoveries = Counter::default();
    registry.register("write_recoveries", "Writes a crash had interrupted that this process finished", recoveries.clone());
    Metrics {
        registry,
        requests,
        request_seconds,
        in_flight,
        query_seconds,
        ingest_seconds,
        log_commit_seconds,
        log_group_entries,
        cache,
        connector_runs,
        recoveries,
    }
});

/// One HTTP request answered.
pub fn request(route: &str, method: &str, status: u16, took: Duration) {
    let m = &*METRICS;
    m.requests.get_or_create(&vec![("route", route.to_string()), ("method", method.to_string()), ("status", status.to_string())]).inc();
    m.request_seconds.get_or_create(&vec![("route", route.to_string()), ("method", method.to_string())]).observe(took.as_secs_f64());
}

/// A request started (the guard ends it).
pub fn request_started() -> InFlight {
    METRICS.in_flight.inc();
    InFlight(())
}

/// A request being answered; dropped when it is.
#[derive(Debug)]
pub struct InFlight(());

impl Drop for InFlight {
    fn drop(&mut self) {
        METRICS.in_flight.dec();
    }
}

/// One read through the door finished (`status`: ok, failed, cancelled).
pub fn query(status: &str, took: Duration) {
    METRICS.query_seconds.get_or_create(&vec![("status", status.to_string())]).observe(took.as_secs_f64());
}

/// One write of a dataset finished (`mode`: ingest, erase, reindex; `outcome`: ok, failed).
pub fn write(mode: &str, outcome: &str, took: Duration) {
    METRICS.ingest_seconds.get_or_create(&vec![("mode", mode.to_string()), ("outcome", outcome.to_string())]).observe(took.as_secs_f64());
}

/// One group commit of the access log, of `entries` entries.
pub fn log_commit(entries: usize, took: Duration) {
    METRICS.log_commit_seconds.observe(took.as_secs_f64());
    METRICS.log_group_entries.observe(entries as f64);
}

/// A look-up in a cache.
pub fn cache(cache: &'static str, hit: bool) {
    METRICS.cache.get_or_create(&vec![("cache", cache.to_string()), ("outcome", if hit { "hit" } else { "miss" }.to_string())]).inc();
}

/// A connector run finished (`outcome`: the run's state).
pub fn connector_run(outcome: &str) {
    METRICS.connector_runs.get_or_create(&vec![("outcome", outcome.to_string())]).inc();
}

/// An interrupted write finished.
pub fn recovered() {
    METRICS.recoveries.inc();
}

/// Every metric in Prometheus' text exposition format.
pub fn render() -> String {
    let mut out = String::new();
    encode(&mut out, &METRICS.registry).expect("writing to a String does not fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_metrics_are_rendered_with_their_labels() {
        request("/api/v1/sql", "POST", 200, Duration::from_millis(12));
        write("ingest", "ok", Duration::from_millis(300));
        cache("policy", true);
        let text = render();
        assert!(text.contains(r#"tverr_http_requests_total{route="/api/v1/sql",method="POST",status="200"} 1"#), "{text}");
        assert!(text.contains(r#"tverr_ingest_duration_seconds_count{mode="ingest",outcome="ok"} 1"#), "{text}");
        assert!(text.contains(r#"tverr_cache_lookups_total{cache="policy",outcome="hit"} 1"#), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
