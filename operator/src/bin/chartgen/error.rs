//! What can go wrong while generating the chart files.

use std::path::PathBuf;

/// What can go wrong while generating the chart files.
#[derive(Debug, thiserror::Error)]
pub enum ChartgenError {
    #[error("serialising the CRD {crd} to YAML failed")]
    CrdYaml {
        crd: String,
        #[source]
        source: yaml_serde::Error,
    },
    #[error("converting the CRD {crd} to JSON failed")]
    CrdJson {
        crd: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the CRD {crd} contains `{{{{` or `}}}}`, which Helm would read as a template action")]
    TemplateDelimiter { crd: String },
    #[error("serialising the values schema failed")]
    SchemaJson(#[source] serde_json::Error),
    #[error("reading {path} failed")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path} failed")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} does not parse as the chart's values")]
    Values {
        path: PathBuf,
        #[source]
        source: yaml_serde::Error,
    },
    #[error("{path} has no `{marker}` line to place the values table at")]
    MissingMarker { path: PathBuf, marker: &'static str },
}
