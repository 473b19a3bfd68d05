//! Prometheus metrics of the registry server: one `prometheus_client` Registry per process.

use std::fmt;
use std::hash::Hash;

use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, LabelSetEncoder, LabelValueEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Matched route template, e.g. `/peers/store/{store}`; `unmatched` for unknown paths.
    pub route: &'static str,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

/// A value of a `result` label, spelled in one place for where it is counted, where it is
/// created at 0 and the metric's help text, so they cannot drift apart.
pub trait ResultLabel: Clone + Hash + Eq + fmt::Debug + Send + Sync + 'static {
    /// Results that exist from the start, so `rate()` and `absent()` in alerts see a zero
    /// rather than no series before the first event.
    const KNOWN: &'static [Self];

    fn as_str(&self) -> &'static str;
}

/// `result` of `registrations_total`; also the `status` of the `/register` answer.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RegisterResult {
    Registered,
    Refreshed,
    /// Refused, with the error code of the answer (e.g. `invalid_signature`).
    Rejected(&'static str),
}

impl ResultLabel for RegisterResult {
    const KNOWN: &'static [Self] = &[Self::Registered, Self::Refreshed];

    fn as_str(&self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Refreshed => "refreshed",
            Self::Rejected(code) => code,
        }
    }
}

/// `result` of `unregistrations_total`; also the `status` of the `/unregister` answer.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum UnregisterResult {
    Unregistered,
    NotFound,
    /// Refused, with the error code of the answer.
    Rejected(&'static str),
}

impl ResultLabel for UnregisterResult {
    const KNOWN: &'static [Self] = &[Self::Unregistered, Self::NotFound];

    fn as_str(&self) -> &'static str {
        match self {
            Self::Unregistered => "unregistered",
            Self::NotFound => "notFound",
            Self::Rejected(code) => code,
        }
    }
}

/// `result` of `federation_records_total`: what became of one relayed record or removal.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum FederationResult {
    /// Verified and newer than what was held: merged.
    Accepted,
    /// Verified but not newer than what was held (already seen, often through another sibling).
    Unchanged,
    /// Verified but older than the freshness window.
    Stale,
    /// Verified, but no room for it (`--max-peers` or `--max-state-bytes`).
    Full,
    /// Forged, tampered, out of bounds or of another network: dropped.
    Rejected,
}

impl ResultLabel for FederationResult {
    const KNOWN: &'static [Self] = &[
        Self::Accepted,
        Self::Unchanged,
        Self::Stale,
        Self::Full,
        Self::Rejected,
    ];

    fn as_str(&self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Unchanged => "unchanged",
            Self::Stale => "stale",
            Self::Full => "full",
            Self::Rejected => "rejected",
        }
    }
}

/// `result` of `federation_pulls_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum PullResult {
    Ok,
    Error,
}

impl ResultLabel for PullResult {
    const KNOWN: &'static [Self] = &[Self::Ok, Self::Error];

    fn as_str(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }
}

impl EncodeLabelValue for PullResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// `reason` of `connections_closed_total`: why the server closed (or refused) a connection.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum CloseReason {
    /// No request in flight for `--idle-timeout`.
    Idle,
    /// Idle the longest when `--max-connections` was reached: closed to make room.
    Evicted,
    /// Refused at once: `--max-connections` reached and every connection busy.
    Refused,
    /// TLS handshake not finished within `--tls-handshake-timeout`, or failed.
    TlsHandshake,
    /// The server is shutting down.
    Shutdown,
}

impl CloseReason {
    const KNOWN: [Self; 5] = [
        Self::Idle,
        Self::Evicted,
        Self::Refused,
        Self::TlsHandshake,
        Self::Shutdown,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Evicted => "evicted",
            Self::Refused => "refused",
            Self::TlsHandshake => "tls_handshake",
            Self::Shutdown => "shutdown",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct CloseLabels {
    pub reason: CloseReason,
}

impl EncodeLabelSet for CloseLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        EncodeLabelSet::encode(&[("reason", self.reason.as_str())], encoder)
    }
}

/// The label set `{result}` of a result counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct ResultLabels<R> {
    pub result: R,
}

impl<R: ResultLabel> EncodeLabelSet for ResultLabels<R> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        EncodeLabelSet::encode(&[("result", self.result.as_str())], encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PullLabels {
    /// Sibling server URL.
    pub peer: String,
    pub result: PullResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiblingLabels {
    /// Sibling server URL.
    pub peer: String,
}

fn known_list<R: ResultLabel>() -> String {
    R::KNOWN
        .iter()
        .map(ResultLabel::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Registers a counter by `result` whose known results start at 0; `{known}` in `help` becomes
/// their list.
fn result_counter<R: ResultLabel>(
    registry: &mut Registry,
    name: &str,
    help: &str,
) -> Family<ResultLabels<R>, Counter> {
    let family = Family::<ResultLabels<R>, Counter>::default();
    registry.register(
        name,
        help.replace("{known}", &known_list::<R>()),
        family.clone(),
    );
    for result in R::KNOWN {
        family
            .get_or_create(&ResultLabels {
                result: result.clone(),
            })
            .inc_by(0);
    }
    family
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram>,
    pub registrations: Family<ResultLabels<RegisterResult>, Counter>,
    pub unregistrations: Family<ResultLabels<UnregisterResult>, Counter>,
    pub peers: Gauge,
    pub stores: Gauge,
    pub expirations: Counter,
    pub federation_records: Family<ResultLabels<FederationResult>, Counter>,
    pub federation_pulls: Family<PullLabels, Counter>,
    pub federation_sibling_replicas: Family<SiblingLabels, Gauge>,
    pub rate_limited: Counter,
    pub open_connections: Gauge,
    pub connections_closed: Family<CloseLabels, Counter>,
    pub state_bytes: Gauge,
    pub removals: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("dig_bootstrap");
        let http_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by matched route, method and status",
            http_requests.clone(),
        );
        let http_duration =
            Family::<RouteLabels, Histogram>::new_with_constructor(|| -> Histogram {
                // 50 us .. ~1.6 s
                Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
            });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request duration by matched route",
            http_duration.clone(),
        );
        let registrations = result_counter(
            &mut registry,
            "registrations",
            "POST /register by result: {known}, or the rejection's error code",
        );
        let unregistrations = result_counter(
            &mut registry,
            "unregistrations",
            "POST /unregister by result: {known}, or the rejection's error code",
        );
        let peers = Gauge::default();
        registry.register("peers", "Peer records held", peers.clone());
        let stores = Gauge::default();
        registry.register("stores", "Distinct store names held", stores.clone());
        let expirations = Counter::default();
        registry.register(
            "expirations",
            "Peer records removed because their TTL ran out",
            expirations.clone(),
        );
        let federation_records = result_counter(
            &mut registry,
            "federation_records",
            "Records and removals pulled from sibling servers by result: {known} (accepted: \
             merged; unchanged: not newer than held; stale: too old; full: no room under \
             --max-peers or --max-state-bytes; rejected: forged, tampered or out of bounds)",
        );
        let federation_pulls = Family::<PullLabels, Counter>::default();
        registry.register(
            "federation_pulls",
            format!(
                "Pulls of sibling servers' /records by peer and result: {}",
                known_list::<PullResult>()
            ),
            federation_pulls.clone(),
        );
        let federation_sibling_replicas = Family::<SiblingLabels, Gauge>::default();
        registry.register(
            "federation_sibling_replicas",
            "Replicas behind a sibling URL pulled on their own, this server not counted",
            federation_sibling_replicas.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "rate_limited_requests",
            "Requests answered 429 by the per-client rate limit",
            rate_limited.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections open (bounded by --max-connections)",
            open_connections.clone(),
        );
        let connections_closed = Family::<CloseLabels, Counter>::default();
        registry.register(
            "connections_closed",
            "Client connections the server closed or refused, by reason: idle (no request for \
             --idle-timeout), evicted (idle the longest at --max-connections), refused (at \
             --max-connections with every connection busy), tls_handshake (timed out or failed), \
             shutdown",
            connections_closed.clone(),
        );
        for reason in CloseReason::KNOWN {
            connections_closed
                .get_or_create(&CloseLabels { reason })
                .inc_by(0);
        }
        let state_bytes = Gauge::default();
        registry.register_with_unit(
            "state",
            "Estimated memory of the records, store names and removals held (bounded by \
             --max-state-bytes)",
            prometheus_client::registry::Unit::Bytes,
            state_bytes.clone(),
        );
        let removals = Gauge::default();
        registry.register(
            "removals",
            "Removals remembered to block older records of removed peers",
            removals.clone(),
        );
        Self {
            registry,
            http_requests,
            http_duration,
            registrations,
            unregistrations,
            peers,
            stores,
            expirations,
            federation_records,
            federation_pulls,
            federation_sibling_replicas,
            rate_limited,
            open_connections,
            connections_closed,
            state_bytes,
            removals,
        }
    }

    /// Counts a connection the server closed or refused.
    pub fn count_close(&self, reason: CloseReason) {
        self.connections_closed
            .get_or_create(&CloseLabels { reason })
            .inc();
    }

    pub fn count_result<R: ResultLabel>(family: &Family<ResultLabels<R>, Counter>, result: R) {
        family.get_or_create(&ResultLabels { result }).inc();
    }

    /// Counts one pull of the sibling at `peer`.
    pub fn count_pull(&self, peer: &str, result: PullResult) {
        self.federation_pulls
            .get_or_create(&PullLabels {
                peer: peer.to_owned(),
                result,
            })
            .inc();
    }

    /// How many replicas behind the sibling URL `peer` are pulled.
    pub fn set_sibling_replicas(&self, peer: &str, replicas: usize) {
        self.federation_sibling_replicas
            .get_or_create(&SiblingLabels {
                peer: peer.to_owned(),
            })
            .set(i64::try_from(replicas).unwrap_or(i64::MAX));
    }

    /// Creates the pull series of the sibling at `peer` at 0, so an alert on its errors sees a
    /// zero before the first failure.
    pub fn add_sibling(&self, peer: &str) {
        for result in PullResult::KNOWN {
            self.federation_pulls
                .get_or_create(&PullLabels {
                    peer: peer.to_owned(),
                    result: *result,
                })
                .inc_by(0);
        }
    }

    /// OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("encoding metrics into a String");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zero_series<R: ResultLabel>(metric: &str) -> Vec<String> {
        R::KNOWN
            .iter()
            .map(|result| {
                format!(
                    "dig_bootstrap_{metric}_total{{result=\"{}\"}} 0",
                    result.as_str()
                )
            })
            .collect()
    }

    #[test]
    fn known_results_are_exported_as_zero_before_any_event() {
        let text = Metrics::new().encode();
        let expected = [
            zero_series::<RegisterResult>("registrations"),
            zero_series::<UnregisterResult>("unregistrations"),
            zero_series::<FederationResult>("federation_records"),
        ]
        .concat();
        assert_eq!(expected.len(), 9);
        for series in &expected {
            assert!(
                text.contains(series.as_str()),
                "{series} missing from:\n{text}"
            );
        }
        assert!(
            text.contains(r#"dig_bootstrap_registrations_total{result="registered"} 0"#),
            "the exported spelling stays what dashboards query:\n{text}"
        );
        assert!(
            text.contains("POST /register by result: registered, refreshed, or"),
            "help names the known results:\n{text}"
        );
    }

    #[test]
    fn a_rejection_is_labelled_with_its_error_code() {
        let metrics = Metrics::new();
        Metrics::count_result(
            &metrics.registrations,
            RegisterResult::Rejected("invalid_signature"),
        );
        Metrics::count_result(&metrics.federation_records, FederationResult::Stale);
        let text = metrics.encode();
        assert!(
            text.contains(r#"dig_bootstrap_registrations_total{result="invalid_signature"} 1"#)
        );
        assert!(text.contains(r#"dig_bootstrap_federation_records_total{result="stale"} 1"#));
    }

    #[test]
    fn a_sibling_has_both_pull_results_from_the_start() {
        let metrics = Metrics::new();
        metrics.add_sibling("http://127.0.0.1:3001");
        metrics.count_pull("http://127.0.0.1:3001", PullResult::Error);
        let text = metrics.encode();
        assert!(text.contains(
            r#"dig_bootstrap_federation_pulls_total{peer="http://127.0.0.1:3001",result="ok"} 0"#
        ));
        assert!(text.contains(
            r#"dig_bootstrap_federation_pulls_total{peer="http://127.0.0.1:3001",result="error"} 1"#
        ));
    }
}
