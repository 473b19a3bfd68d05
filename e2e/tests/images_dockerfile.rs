//! The Dockerfile against what the workspace needs: its Rust version builds every locked crate
//! (each crate's `rust-version`, as `cargo metadata` reports it) and is the workspace's own
//! `rust-version`, so the images build and the declared minimum is true.

use std::process::Command;

use dig_e2e::process::workspace_root;
use serde_json::Value;

/// A Rust version `major.minor[.patch]`, compared as numbers.
fn parse_version(text: &str) -> (u32, u32, u32) {
    let mut parts = text.trim().split('.').map(|part| {
        part.parse::<u32>()
            .unwrap_or_else(|e| panic!("Rust version {text:?}: {e}"))
    });
    let major = parts.next().expect("a major version");
    let minor = parts.next().unwrap_or(0);
    let patch = parts.next().unwrap_or(0);
    (major, minor, patch)
}

fn shown((major, minor, patch): (u32, u32, u32)) -> String {
    format!("{major}.{minor}.{patch}")
}

/// `ARG RUST_VERSION=...` of the Dockerfile.
fn dockerfile_rust_version() -> (u32, u32, u32) {
    let path = workspace_root().join("Dockerfile");
    let text = std::fs::read_to_string(&path).expect("reading the Dockerfile");
    let value = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("ARG RUST_VERSION="))
        .unwrap_or_else(|| panic!("{} has no `ARG RUST_VERSION=`", path.display()));
    parse_version(value)
}

/// The resolved packages of the Linux targets the images are built for.
fn locked_metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--filter-platform",
            "x86_64-unknown-linux-gnu",
            "--filter-platform",
            "aarch64-unknown-linux-gnu",
        ])
        .output()
        .expect("running cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

/// The highest `rust-version` among the resolved packages, and the packages that declare it.
fn highest_required(metadata: &Value) -> ((u32, u32, u32), Vec<String>) {
    let resolved: std::collections::HashSet<&str> = metadata["resolve"]["nodes"]
        .as_array()
        .expect("a resolve graph")
        .iter()
        .filter_map(|node| node["id"].as_str())
        .collect();
    let mut highest = ((0, 0, 0), Vec::new());
    for package in metadata["packages"].as_array().expect("packages") {
        let (Some(id), Some(required)) = (package["id"].as_str(), package["rust_version"].as_str())
        else {
            continue;
        };
        if !resolved.contains(id) {
            continue;
        }
        let version = parse_version(required);
        let name = format!("{} {}", package["name"], package["version"]);
        if version > highest.0 {
            highest = (version, vec![name]);
        } else if version == highest.0 {
            highest.1.push(name);
        }
    }
    highest
}

#[test]
fn dockerfile_rust_builds_every_locked_crate_and_is_the_workspace_minimum() {
    let metadata = locked_metadata();
    let (required, by) = highest_required(&metadata);
    let dockerfile = dockerfile_rust_version();
    assert!(
        dockerfile >= required,
        "the Dockerfile builds with Rust {} but {} need Rust {}: raise ARG RUST_VERSION",
        shown(dockerfile),
        by.join(", "),
        shown(required)
    );

    let root = workspace_root().join("Cargo.toml");
    let manifest = std::fs::read_to_string(&root).expect("reading Cargo.toml");
    let declared = manifest
        .lines()
        .find_map(|line| line.trim().strip_prefix("rust-version = "))
        .map(|value| parse_version(value.trim_matches('"')))
        .expect("the workspace declares rust-version");
    assert!(
        declared >= required,
        "Cargo.toml says rust-version {} but {} need Rust {}",
        shown(declared),
        by.join(", "),
        shown(required)
    );
    assert_eq!(
        (dockerfile.0, dockerfile.1),
        (declared.0, declared.1),
        "the Dockerfile's Rust ({}) is the workspace's rust-version ({}): what users build with is \
         what the workspace promises",
        shown(dockerfile),
        shown(declared)
    );
}

#[test]
fn versions_compare_as_numbers() {
    assert!(parse_version("1.89") > parse_version("1.88.9"));
    assert!(parse_version("1.100") > parse_version("1.99"));
    assert_eq!(parse_version("1.89"), parse_version("1.89.0"));
}
