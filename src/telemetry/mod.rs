//! EN-8: the figures `GET /metrics` shows, in the Prometheus text format.
//! The engine records them with the `metrics` crate's macros into one
//! Prometheus recorder per process (`metrics-exporter-prometheus`, without
//! its own listener: the console serves the page). `metrics` was chosen
//! over `prometheus-client` because its macros need no registry handed
//! down to every recording site, and it is the pair DESIGN.md names.
//!
//! Labels name nodes and gateways (their descriptions, which
//! administrators choose), never users or mailboxes, so the number of
//! series stays with the configuration, not the directory.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const REQUESTS: &str = "presence_gateway_exchange_requests_total";
pub const ERRORS: &str = "presence_gateway_exchange_errors_total";
pub const ANSWER_SECONDS: &str = "presence_gateway_exchange_answer_seconds";
pub const THROTTLED_SECONDS: &str = "presence_gateway_exchange_throttled_seconds_total";
pub const SUBSCRIPTIONS: &str = "presence_gateway_exchange_subscriptions";
pub const TRANSITIONS: &str = "presence_gateway_transitions_total";
pub const PUBLICATION_LAG: &str = "presence_gateway_publication_lag_seconds";

/// Answer times: from a fast loopback answer to Exchange Timeout's range.
const ANSWER_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Publication lag in whole seconds of calendar time: 0 is on time.
const LAG_BUCKETS: &[f64] = &[0.0, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed at the first call; `None` when
/// another recorder was installed first (the page then says so).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(ANSWER_SECONDS.to_owned()), ANSWER_BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Full(PUBLICATION_LAG.to_owned()), LAG_BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: no recorder installed");
                    None
                }
            }
        })
        .as_ref()
}

/// Installs the recorder before anything is recorded (figures recorded
/// before it would be lost).
pub fn install() {
    let _ = handle();
}

/// A request sent to a gateway.
pub fn request(node: &str, gateway: &str) {
    metrics::counter!(REQUESTS, "node" => node.to_owned(), "gateway" => gateway.to_owned())
        .increment(1);
}

/// A gateway's answer came (of any kind) after `took`.
pub fn answered(node: &str, gateway: &str, took: Duration) {
    metrics::histogram!(ANSWER_SECONDS, "node" => node.to_owned(), "gateway" => gateway.to_owned())
        .record(took.as_secs_f64());
}

/// A request failed; `kind` is one of a few fixed words.
pub fn error(node: &str, gateway: &str, kind: &'static str) {
    metrics::counter!(
        ERRORS,
        "node" => node.to_owned(),
        "gateway" => gateway.to_owned(),
        "kind" => kind
    )
    .increment(1);
}

/// The gateway asked to be left alone for `back_off` (whole seconds,
/// rounded up, so a short back-off still shows).
pub fn throttled(node: &str, gateway: &str, back_off: Duration) {
    let seconds = back_off.as_secs() + u64::from(back_off.subsec_nanos() > 0);
    metrics::counter!(THROTTLED_SECONDS, "node" => node.to_owned(), "gateway" => gateway.to_owned())
        .increment(seconds);
}

/// Push subscriptions held on a gateway now.
pub fn subscriptions(node: &str, gateway: &str, held: i64) {
    metrics::gauge!(SUBSCRIPTIONS, "node" => node.to_owned(), "gateway" => gateway.to_owned())
        .set(held as f64);
}

/// Transitions written to the presence log.
pub fn transitions(node: &str, written: u64) {
    metrics::counter!(TRANSITIONS, "node" => node.to_owned()).increment(written);
}

/// A transition went out `lag` seconds of calendar time after it was due.
pub fn publication_lag(node: &str, lag: i64) {
    metrics::histogram!(PUBLICATION_LAG, "node" => node.to_owned()).record(lag.max(0) as f64);
}

/// The recorded figures in the text format.
pub fn render() -> Option<String> {
    let handle = handle()?;
    handle.run_upkeep();
    Some(handle.render())
}
