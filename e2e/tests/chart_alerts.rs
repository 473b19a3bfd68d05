//! The chart's alerts, evaluated by Prometheus' own rule engine: `promtool check rules` on the
//! PrometheusRule that `helm template` renders, and `promtool test rules` with the unit tests in
//! `alerts/dig-alerts.test.yaml` against those same rendered rules (never a copy that could
//! drift). Every alert of the chart must be tested both firing and quiet.

mod chart_support;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use chart_support::{Helm, workspace_root};
use dig_e2e::{browser::find_program, cluster::cluster_required, process::target_dir};
use serde_json::Value;

const TEST_FILE: &str = "e2e/tests/alerts/dig-alerts.test.yaml";

fn promtool_or_skip(test: &str) -> Option<PathBuf> {
    let found = find_program("promtool");
    if found.is_none() {
        let reason = "promtool is not installed (Debian package prometheus)";
        assert!(
            !cluster_required(),
            "{test}: DIG_E2E_REQUIRE_CLUSTER=1 but {reason}"
        );
        eprintln!("SKIPPED {test}: {reason}");
    }
    found
}

/// Runs promtool with `args` in `dir`; its output, or a panic with it.
fn promtool(binary: &Path, dir: &Path, args: &[&str]) -> Result<String, String> {
    let output = Command::new(binary)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", binary.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "promtool {} failed ({}):\n{text}",
            args.join(" "),
            output.status
        ))
    }
}

/// The rules file of the chart's PrometheusRule (its `spec`), rendered with `extra` values.
fn rendered_rules(helm: &Helm, extra: &[&str]) -> Value {
    let mut args = vec!["--api-versions", "monitoring.coreos.com/v1"];
    args.extend_from_slice(extra);
    let rendered = helm.template(&args);
    let rules = rendered.of_kind("PrometheusRule");
    assert_eq!(rules.len(), 1, "one PrometheusRule");
    rules[0]["spec"].clone()
}

fn alert_names(rules: &Value) -> BTreeSet<String> {
    rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_array().into_iter().flatten())
        .filter_map(|rule| rule["alert"].as_str().map(str::to_string))
        .collect()
}

fn work_dir(name: &str) -> PathBuf {
    let dir = target_dir().join(format!("chart-alerts-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work dir");
    dir
}

#[test]
fn every_alert_fires_on_its_failure_and_stays_quiet_when_healthy() {
    let test = "every_alert_fires_on_its_failure_and_stays_quiet_when_healthy";
    let Some(promtool_bin) = promtool_or_skip(test) else {
        return;
    };
    let Some(helm) = Helm::or_skip(test) else {
        return;
    };
    let rules = rendered_rules(&helm, &[]);
    let dir = work_dir("test");
    // JSON is YAML: promtool reads the rendered spec as it is.
    std::fs::write(dir.join("rules.yaml"), rules.to_string()).expect("rules.yaml");
    let tests_text = std::fs::read_to_string(workspace_root().join(TEST_FILE)).expect("test file");
    std::fs::write(dir.join("dig-alerts.test.yaml"), &tests_text).expect("copy of the tests");

    let checked = promtool(&promtool_bin, &dir, &["check", "rules", "rules.yaml"])
        .unwrap_or_else(|e| panic!("{e}"));
    let alerts = alert_names(&rules);
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", alerts.len())),
        "{checked}"
    );
    let output = promtool(
        &promtool_bin,
        &dir,
        &["test", "rules", "dig-alerts.test.yaml"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(output.contains("SUCCESS"), "{output}");

    // Coverage: every alert is expected to fire in some test and to stay quiet in some test.
    let tests: Value = yaml_serde::from_str(&tests_text).expect("test YAML");
    let mut fired = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for case in tests["tests"].as_array().expect("tests") {
        for check in case["alert_rule_test"].as_array().into_iter().flatten() {
            let name = check["alertname"].as_str().expect("alertname").to_string();
            let expected = check["exp_alerts"].as_array().map_or(0, Vec::len);
            if expected > 0 {
                fired.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    for alert in &alerts {
        assert!(
            fired.contains(alert),
            "{alert} is never tested firing in {TEST_FILE}"
        );
        assert!(
            quiet.contains(alert),
            "{alert} is never tested quiet in {TEST_FILE}"
        );
    }
    let unknown: Vec<_> = fired
        .union(&quiet)
        .filter(|a| !alerts.contains(*a))
        .collect();
    assert!(
        unknown.is_empty(),
        "{TEST_FILE} tests alerts the chart lacks: {unknown:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The rule files of other value sets pass `promtool check rules` too (the webhook alert is
/// left out with cert-manager, thresholds and extra labels are templated).
#[test]
fn the_rules_of_every_value_set_are_valid() {
    let test = "the_rules_of_every_value_set_are_valid";
    let Some(promtool_bin) = promtool_or_skip(test) else {
        return;
    };
    let Some(helm) = Helm::or_skip(test) else {
        return;
    };
    let dir = work_dir("check");
    let value_sets: [&[&str]; 3] = [
        &[],
        &["--set", "webhook.certManager.enabled=true"],
        &[
            "--set",
            "prometheusRule.nodeWithoutPeersMinutes=3",
            "--set",
            "prometheusRule.replicationPendingThreshold=100",
            "--set",
            "prometheusRule.additionalAlertLabels.team=storage",
        ],
    ];
    for values in value_sets {
        let rules = rendered_rules(&helm, values);
        std::fs::write(dir.join("rules.yaml"), rules.to_string()).expect("rules.yaml");
        let checked = promtool(&promtool_bin, &dir, &["check", "rules", "rules.yaml"])
            .unwrap_or_else(|e| panic!("with {values:?}: {e}"));
        assert!(checked.contains("SUCCESS"), "with {values:?}: {checked}");
        let webhook_alert = alert_names(&rules).contains("DigOperatorWebhookCertificateExpiring");
        assert_eq!(
            webhook_alert,
            !values.contains(&"webhook.certManager.enabled=true"),
            "with {values:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
