//! Prometheus metrics of the registry server: one `prometheus_client` Registry per process.

use prometheus_client::encoding::EncodeLabelSet;
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `registered`, `refreshed`, or the error code of a rejection.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PullLabels {
    /// Sibling server URL.
    pub peer: String,
    /// `ok` or `error`.
    pub result: String,
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram>,
    pub registrations: Family<ResultLabels, Counter>,
    pub unregistrations: Family<ResultLabels, Counter>,
    pub peers: Gauge,
    pub stores: Gauge,
    pub expirations: Counter,
    pub federation_records: Family<ResultLabels, Counter>,
    pub federation_pulls: Family<PullLabels, Counter>,
    pub rate_limited: Counter,
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
        let registrations = Family::<ResultLabels, Counter>::default();
        registry.register(
            "registrations",
            "POST /register by result: registered, refreshed, or the rejection's error code",
            registrations.clone(),
        );
        let unregistrations = Family::<ResultLabels, Counter>::default();
        registry.register(
            "unregistrations",
            "POST /unregister by result: unregistered, notFound, or the rejection's error code",
            unregistrations.clone(),
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
        let federation_records = Family::<ResultLabels, Counter>::default();
        registry.register(
            "federation_records",
            "Records and removals pulled from sibling servers: accepted, unchanged (not newer), \
             or rejected (forged, tampered or out of bounds)",
            federation_records.clone(),
        );
        let federation_pulls = Family::<PullLabels, Counter>::default();
        registry.register(
            "federation_pulls",
            "Pulls of sibling servers' /records by peer and result",
            federation_pulls.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "rate_limited_requests",
            "Requests answered 429 by the per-client rate limit",
            rate_limited.clone(),
        );
        // Known results exist from the start, so rate() and absent() in alerts see a zero
        // rather than no series before the first event.
        for (family, results) in [
            (&registrations, &["registered", "refreshed"][..]),
            (&unregistrations, &["unregistered", "notFound"][..]),
            (
                &federation_records,
                &["accepted", "unchanged", "rejected"][..],
            ),
        ] {
            for result in results {
                let labels = ResultLabels {
                    result: (*result).to_owned(),
                };
                family.get_or_create(&labels).inc_by(0);
            }
        }
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
            rate_limited,
        }
    }

    pub fn count_result(family: &Family<ResultLabels, Counter>, result: &str) {
        family
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
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

    #[test]
    fn known_results_are_exported_as_zero_before_any_event() {
        let text = Metrics::new().encode();
        for series in [
            r#"dig_bootstrap_registrations_total{result="registered"} 0"#,
            r#"dig_bootstrap_unregistrations_total{result="notFound"} 0"#,
            r#"dig_bootstrap_federation_records_total{result="rejected"} 0"#,
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
    }
}
