//! The operator-wide settings of the injection.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Operator-wide injection settings.
#[derive(Clone, Debug)]
pub struct InjectorSettings {
    /// Namespaces never injected; `kube-system` is always among them.
    pub excluded_namespaces: Vec<String>,
    /// Resources used when neither the network nor an annotation says otherwise.
    pub default_resources: ResourceRequirements,
}

impl Default for InjectorSettings {
    fn default() -> Self {
        let quantities = |cpu: &str, memory: &str| {
            BTreeMap::from([
                ("cpu".to_string(), Quantity(cpu.to_string())),
                ("memory".to_string(), Quantity(memory.to_string())),
            ])
        };
        Self {
            excluded_namespaces: vec!["kube-system".to_string()],
            default_resources: ResourceRequirements {
                requests: Some(quantities("50m", "64Mi")),
                limits: Some(BTreeMap::from([(
                    "memory".to_string(),
                    Quantity("512Mi".to_string()),
                )])),
                ..Default::default()
            },
        }
    }
}
