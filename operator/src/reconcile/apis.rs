//! The optional APIs of other projects the operator writes to when a cluster serves them: the
//! Prometheus operator's monitors and external-dns's DNSEndpoint. Discovered at run time
//! (`context::Capabilities`), never assumed.

use kube::api::{ApiResource, GroupVersionKind};

/// Group/version of the Prometheus operator's API.
pub const MONITORING_API: &str = "monitoring.coreos.com/v1";
/// Plural of the Prometheus operator's ServiceMonitor resource.
pub const SERVICE_MONITORS: &str = "servicemonitors";
/// Plural of the Prometheus operator's PodMonitor resource.
pub const POD_MONITORS: &str = "podmonitors";
/// Group/version of external-dns's DNSEndpoint API.
pub const DNS_ENDPOINT_API: &str = "externaldns.k8s.io/v1alpha1";

/// The ServiceMonitor API of the Prometheus operator.
pub fn service_monitor_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        SERVICE_MONITORS,
    )
}

/// The PodMonitor API of the Prometheus operator.
pub fn pod_monitor_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "PodMonitor"),
        POD_MONITORS,
    )
}

/// The `DNSEndpoint` API of external-dns.
pub fn dns_endpoint_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("externaldns.k8s.io", "v1alpha1", "DNSEndpoint"),
        "dnsendpoints",
    )
}
