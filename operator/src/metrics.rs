//! Prometheus metrics of the operator (prometheus-client, one registry).

use std::time::Duration;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
    pub reason: String,
}

/// Every metric the operator exports.
#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Family<KindLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Family<KindLabels, Histogram>,
    pub managed: Family<KindLabels, Gauge>,
    pub leader: Gauge,
}

impl Metrics {
    /// Creates the metrics and registers them under the `dig_operator` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            reconciles: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
            }),
            managed: Family::default(),
            leader: Gauge::default(),
        };
        let registry = registry.sub_registry_with_prefix("dig_operator");
        registry.register(
            "reconciles",
            "Reconciliations run, by resource kind",
            metrics.reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciliations, by kind and error reason",
            metrics.errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconciliation took, by kind",
            metrics.duration.clone(),
        );
        registry.register(
            "managed_resources",
            "DigNetworks and DigNodes this replica manages, by kind",
            metrics.managed.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            metrics.leader.clone(),
        );
        metrics
    }

    pub fn reconciled(&self, kind: &str, took: Duration) {
        let labels = KindLabels {
            kind: kind.to_string(),
        };
        self.reconciles.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    pub fn failed(&self, kind: &str, reason: String) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.to_string(),
                reason,
            })
            .inc();
    }

    pub fn set_managed(&self, kind: &str, count: usize) {
        self.managed
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .set(count as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_exported_with_labels() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics.reconciled("DigNetwork", Duration::from_millis(20));
        metrics.failed("DigNetwork", "apply".to_string());
        metrics.set_managed("DigNetwork", 2);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"dig_operator_reconciles_total{kind="DigNetwork"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"dig_operator_reconcile_errors_total{kind="DigNetwork",reason="apply"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"dig_operator_managed_resources{kind="DigNetwork"} 2"#),
            "{text}"
        );
        assert!(
            text.contains("dig_operator_reconcile_duration_seconds_bucket"),
            "{text}"
        );
    }
}
