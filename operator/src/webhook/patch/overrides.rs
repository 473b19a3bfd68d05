//! Per-pod overrides of the sidecar, read from the pod's annotations and checked: image,
//! resources, ports.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::checks::validate_image;
use super::denial::Denial;
use crate::crd::labels::{
    API_PORT_ANNOTATION, CPU_LIMIT_ANNOTATION, CPU_REQUEST_ANNOTATION, IMAGE_ANNOTATION,
    MEMORY_LIMIT_ANNOTATION, MEMORY_REQUEST_ANNOTATION, P2P_PORT_ANNOTATION,
};
use crate::quantity::parse_quantity;

/// Per-pod overrides read from annotations, each validated.
#[derive(Debug, Default, PartialEq)]
pub struct Overrides {
    pub image: Option<String>,
    pub cpu_request: Option<Quantity>,
    pub memory_request: Option<Quantity>,
    pub cpu_limit: Option<Quantity>,
    pub memory_limit: Option<Quantity>,
    pub p2p_port: Option<u16>,
    pub api_port: Option<u16>,
}

impl Overrides {
    pub fn parse(annotations: &BTreeMap<String, String>) -> Result<Self, Denial> {
        let quantity = |annotation: &'static str| -> Result<Option<Quantity>, Denial> {
            annotations
                .get(annotation)
                .map(|value| {
                    parse_quantity(value)
                        .map(|_| Quantity(value.trim().to_string()))
                        .map_err(|reason| Denial::InvalidAnnotation {
                            annotation,
                            value: value.clone(),
                            reason,
                        })
                })
                .transpose()
        };
        let port = |annotation: &'static str| -> Result<Option<u16>, Denial> {
            annotations
                .get(annotation)
                .map(|value| match value.trim().parse::<u16>() {
                    Ok(port) if port > 0 => Ok(port),
                    _ => Err(Denial::InvalidAnnotation {
                        annotation,
                        value: value.clone(),
                        reason: "must be a port number from 1 to 65535".to_string(),
                    }),
                })
                .transpose()
        };
        let image = annotations
            .get(IMAGE_ANNOTATION)
            .map(|value| {
                validate_image(value)
                    .map(|()| value.clone())
                    .map_err(|reason| Denial::InvalidAnnotation {
                        annotation: IMAGE_ANNOTATION,
                        value: value.clone(),
                        reason,
                    })
            })
            .transpose()?;
        Ok(Self {
            image,
            cpu_request: quantity(CPU_REQUEST_ANNOTATION)?,
            memory_request: quantity(MEMORY_REQUEST_ANNOTATION)?,
            cpu_limit: quantity(CPU_LIMIT_ANNOTATION)?,
            memory_limit: quantity(MEMORY_LIMIT_ANNOTATION)?,
            p2p_port: port(P2P_PORT_ANNOTATION)?,
            api_port: port(API_PORT_ANNOTATION)?,
        })
    }
}

/// Base resources with the annotation overrides applied; a request above its limit is denied here
/// with the annotation's name rather than later by the API server.
pub fn resources(
    base: &ResourceRequirements,
    overrides: &Overrides,
) -> Result<ResourceRequirements, Denial> {
    let mut requests = base.requests.clone().unwrap_or_default();
    let mut limits = base.limits.clone().unwrap_or_default();
    for (resource, request, limit) in [
        ("cpu", &overrides.cpu_request, &overrides.cpu_limit),
        ("memory", &overrides.memory_request, &overrides.memory_limit),
    ] {
        if let Some(request) = request {
            requests.insert(resource.to_string(), request.clone());
        }
        if let Some(limit) = limit {
            limits.insert(resource.to_string(), limit.clone());
        }
    }
    for (resource, request_annotation, limit_annotation) in [
        ("cpu", CPU_REQUEST_ANNOTATION, CPU_LIMIT_ANNOTATION),
        ("memory", MEMORY_REQUEST_ANNOTATION, MEMORY_LIMIT_ANNOTATION),
    ] {
        let (Some(request), Some(limit)) = (requests.get(resource), limits.get(resource)) else {
            continue;
        };
        let (Ok(request_value), Ok(limit_value)) =
            (parse_quantity(&request.0), parse_quantity(&limit.0))
        else {
            continue;
        };
        if request_value > limit_value {
            // Blame the annotation the user set; if both came from the network, blame the request.
            let request_overridden = match resource {
                "cpu" => overrides.cpu_request.is_some(),
                _ => overrides.memory_request.is_some(),
            };
            let limit_overridden = match resource {
                "cpu" => overrides.cpu_limit.is_some(),
                _ => overrides.memory_limit.is_some(),
            };
            let (annotation, value) = if limit_overridden && !request_overridden {
                (limit_annotation, limit.0.clone())
            } else {
                (request_annotation, request.0.clone())
            };
            return Err(Denial::InvalidAnnotation {
                annotation,
                value,
                reason: format!(
                    "the {resource} request {} is above the {resource} limit {}",
                    request.0, limit.0
                ),
            });
        }
    }
    Ok(ResourceRequirements {
        requests: (!requests.is_empty()).then_some(requests),
        limits: (!limits.is_empty()).then_some(limits),
        ..base.clone()
    })
}
