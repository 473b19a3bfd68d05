//! Whether a CRD as generated now still accepts and means what a released one did. Objects stored
//! under a released version must keep working after an upgrade of the CRD: a change that is
//! additive (a new optional field, a wider enum, looser bounds) is served under the same version;
//! anything else needs a new served version with conversion. The comparer works on the CRDs'
//! JSON so it needs no cluster: `operator/tests/crd_compatibility.rs` runs it against the
//! snapshots of the released CRDs.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

/// One change of a CRD that objects of the released version may not survive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Breaking {
    /// Where: `version v1alpha1`, or a field path such as `v1alpha1 .spec.nodes.replicas`.
    pub at: String,
    /// What changed, with the released and the current value.
    pub change: String,
}

impl fmt::Display for Breaking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.change)
    }
}

/// Every breaking change from `released` to `current` (both whole CustomResourceDefinitions as
/// JSON): identity (group, kind, plural, scope), each released version still served with its
/// subresources, and each released version's schema, field by field.
pub fn breaking_changes(released: &Value, current: &Value) -> Vec<Breaking> {
    let mut out = Vec::new();
    for key in ["group", "scope"] {
        same(
            &mut out,
            "spec",
            key,
            &released["spec"][key],
            &current["spec"][key],
        );
    }
    for key in ["kind", "plural"] {
        same(
            &mut out,
            "spec.names",
            key,
            &released["spec"]["names"][key],
            &current["spec"]["names"][key],
        );
    }
    let current_versions = current["spec"]["versions"].as_array();
    for old in released["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = old["name"].as_str().unwrap_or_default();
        let at = format!("version {name}");
        if old["served"] != Value::Bool(true) {
            continue;
        }
        let Some(new) = current_versions
            .into_iter()
            .flatten()
            .find(|v| v["name"].as_str() == Some(name))
        else {
            out.push(Breaking {
                at,
                change: "no longer in the CRD".into(),
            });
            continue;
        };
        if new["served"] != Value::Bool(true) {
            out.push(Breaking {
                at: at.clone(),
                change: "no longer served".into(),
            });
        }
        for subresource in ["status", "scale"] {
            let was = &old["subresources"][subresource];
            if !was.is_null() && new["subresources"][subresource] != *was {
                out.push(Breaking {
                    at: at.clone(),
                    change: format!(
                        "subresource {subresource} changed from {was} to {}",
                        new["subresources"][subresource]
                    ),
                });
            }
        }
        compare_schema(
            &Field {
                version: name,
                path: String::new(),
            },
            &old["schema"]["openAPIV3Schema"],
            &new["schema"]["openAPIV3Schema"],
            &mut out,
        );
    }
    out
}

/// True when `new` is `old`, or an object holding every key of `old` with the same value (keys
/// of nested objects compared the same way) and maybe more.
fn default_extends(old: &Value, new: &Value) -> bool {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => old
            .iter()
            .all(|(key, value)| new.get(key).is_some_and(|n| default_extends(value, n))),
        _ => old == new,
    }
}

fn same(out: &mut Vec<Breaking>, at: &str, key: &str, old: &Value, new: &Value) {
    if old != new {
        out.push(Breaking {
            at: at.to_string(),
            change: format!("{key} changed from {old} to {new}"),
        });
    }
}

/// A schema node: its version and its path below the root (`.spec.nodes`, `.spec.tags[]`).
struct Field<'a> {
    version: &'a str,
    path: String,
}

impl Field<'_> {
    fn below(&self, step: &str) -> Self {
        Field {
            version: self.version,
            path: format!("{}{step}", self.path),
        }
    }

    fn breaking(&self, change: &str) -> Breaking {
        let path = if self.path.is_empty() {
            "."
        } else {
            &self.path
        };
        Breaking {
            at: format!("{} {path}", self.version),
            change: change.to_string(),
        }
    }
}

/// Compares one schema node of the released version (`old`) with the current one (`new`).
fn compare_schema(at: &Field<'_>, old: &Value, new: &Value, out: &mut Vec<Breaking>) {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        if old.is_object() {
            out.push(at.breaking("the schema is gone"));
        }
        return;
    };

    // Keywords whose any change alters what is valid or how it merges.
    for key in [
        "type",
        "format",
        "pattern",
        "x-kubernetes-int-or-string",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
        "x-kubernetes-embedded-resource",
    ] {
        if old.get(key) != new.get(key) {
            out.push(at.breaking(&format!(
                "{key} changed from {} to {}",
                shown(old.get(key)),
                shown(new.get(key))
            )));
        }
    }
    // Stored objects that omit a field are read with its default: a changed default changes them.
    // An object default that only gains keys (the defaults of new fields) changes no released one.
    if old.contains_key("default")
        && !new
            .get("default")
            .is_some_and(|new_default| default_extends(&old["default"], new_default))
    {
        out.push(at.breaking(&format!(
            "default changed from {} to {}",
            shown(old.get("default")),
            shown(new.get("default"))
        )));
    }
    for key in ["nullable", "x-kubernetes-preserve-unknown-fields"] {
        if flag(old, key) && !flag(new, key) {
            out.push(at.breaking(&format!("{key} no longer true")));
        }
    }

    // Bounds may only widen.
    for (key, lower) in [
        ("minimum", true),
        ("minLength", true),
        ("minItems", true),
        ("minProperties", true),
        ("maximum", false),
        ("maxLength", false),
        ("maxItems", false),
        ("maxProperties", false),
    ] {
        let (was, now) = (number(old, key), number(new, key));
        let tighter = match (was, now) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(was), Some(now)) => {
                if lower {
                    now > was
                } else {
                    now < was
                }
            }
        };
        if tighter {
            out.push(at.breaking(&format!(
                "{key} tightened from {} to {}",
                shown(old.get(key)),
                shown(new.get(key))
            )));
        }
    }
    for key in ["exclusiveMinimum", "exclusiveMaximum"] {
        if flag(new, key) && !flag(old, key) {
            out.push(at.breaking(&format!("{key} added")));
        }
    }

    // An enum may only gain values.
    match (strings(old, "enum"), strings(new, "enum")) {
        (_, None) => {}
        (None, Some(_)) => out.push(at.breaking("enum added to a field that took any value")),
        (Some(was), Some(now)) => {
            let dropped: Vec<&String> = was.difference(&now).collect();
            if !dropped.is_empty() {
                out.push(at.breaking(&format!("enum no longer allows {dropped:?}")));
            }
        }
    }

    // Required fields: none added.
    let was_required = strings(old, "required").unwrap_or_default();
    let now_required = strings(new, "required").unwrap_or_default();
    for field in now_required.difference(&was_required) {
        out.push(at.breaking(&format!("`{field}` newly required")));
    }

    // CEL rules: none added or changed (each may reject objects the released version stored).
    let rules = |schema: &Map<String, Value>| -> BTreeSet<String> {
        schema
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|rule| rule["rule"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    for rule in rules(new).difference(&rules(old)) {
        out.push(at.breaking(&format!("validation rule added: {rule}")));
    }

    // Fields: none removed, each compared.
    let empty = Map::new();
    let old_props = old
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let new_props = new
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for (field, old_field) in old_props {
        let below = at.below(&format!(".{field}"));
        match new_props.get(field) {
            Some(new_field) => compare_schema(&below, old_field, new_field, out),
            None => out.push(below.breaking("field removed")),
        }
    }
    for (key, step) in [("items", "[]"), ("additionalProperties", "{}")] {
        match (old.get(key), new.get(key)) {
            (Some(was), Some(now)) => compare_schema(&at.below(step), was, now, out),
            (Some(_), None) => out.push(at.breaking(&format!("{key} removed"))),
            _ => {}
        }
    }
}

fn shown(value: Option<&Value>) -> String {
    value.map_or_else(|| "(none)".to_string(), Value::to_string)
}

fn flag(schema: &Map<String, Value>, key: &str) -> bool {
    schema.get(key) == Some(&Value::Bool(true))
}

fn number(schema: &Map<String, Value>, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
}

fn strings(schema: &Map<String, Value>, key: &str) -> Option<BTreeSet<String>> {
    schema.get(key).and_then(Value::as_array).map(|values| {
        values
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A CRD with one served version whose `spec` schema is `spec`.
    fn crd(spec: Value) -> Value {
        crd_with(spec, json!({"status": {}}))
    }

    fn crd_with(spec: Value, subresources: Value) -> Value {
        json!({"spec": {
            "group": "dig.net",
            "scope": "Namespaced",
            "names": {"kind": "Thing", "plural": "things"},
            "versions": [{
                "name": "v1alpha1",
                "served": true,
                "storage": true,
                "subresources": subresources,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": spec},
                }},
            }],
        }})
    }

    fn base() -> Value {
        json!({
            "type": "object",
            "required": ["replicas"],
            "properties": {
                "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 3},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "name": {"type": "string", "maxLength": 63, "nullable": true},
                "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "x-kubernetes-validations": [{"rule": "self.replicas >= 0", "message": "m"}],
        })
    }

    /// The breaking changes of `base()` edited by `edit`.
    fn changes(edit: impl FnOnce(&mut Value)) -> Vec<String> {
        let mut spec = base();
        edit(&mut spec);
        breaking_changes(&crd(base()), &crd(spec))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn one(edit: impl FnOnce(&mut Value), expected: &str) {
        let found = changes(edit);
        assert_eq!(
            found,
            vec![expected.to_string()],
            "expected only {expected:?}"
        );
    }

    #[test]
    fn the_same_schema_has_no_breaking_change() {
        assert!(changes(|_| {}).is_empty());
    }

    #[test]
    fn additive_changes_are_not_breaking() {
        let found = changes(|spec| {
            spec["properties"]["extra"] = json!({"type": "string", "default": "x"});
            spec["properties"]["mode"]["enum"] = json!(["a", "b", "c"]);
            spec["properties"]["replicas"]["maximum"] = json!(100);
            spec["properties"]["replicas"]
                .as_object_mut()
                .unwrap()
                .remove("minimum");
            spec["properties"]["name"]["maxLength"] = json!(253);
            spec["properties"]["replicas"]["description"] = json!("now documented");
            spec["x-kubernetes-validations"] = json!([]);
        });
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_removed_field_is_breaking() {
        one(
            |spec| {
                spec["properties"].as_object_mut().unwrap().remove("mode");
            },
            "v1alpha1 .spec.mode: field removed",
        );
    }

    #[test]
    fn a_type_change_is_breaking() {
        one(
            |spec| spec["properties"]["replicas"]["type"] = json!("string"),
            "v1alpha1 .spec.replicas: type changed from \"integer\" to \"string\"",
        );
    }

    #[test]
    fn a_newly_required_field_is_breaking() {
        one(
            |spec| spec["required"] = json!(["replicas", "mode"]),
            "v1alpha1 .spec: `mode` newly required",
        );
    }

    #[test]
    fn a_narrowed_or_new_enum_is_breaking() {
        one(
            |spec| spec["properties"]["mode"]["enum"] = json!(["a"]),
            "v1alpha1 .spec.mode: enum no longer allows [\"b\"]",
        );
        one(
            |spec| spec["properties"]["name"]["enum"] = json!(["x"]),
            "v1alpha1 .spec.name: enum added to a field that took any value",
        );
    }

    #[test]
    fn tighter_bounds_are_breaking() {
        one(
            |spec| spec["properties"]["replicas"]["minimum"] = json!(1),
            "v1alpha1 .spec.replicas: minimum tightened from 0 to 1",
        );
        one(
            |spec| spec["properties"]["replicas"]["maximum"] = json!(5),
            "v1alpha1 .spec.replicas: maximum tightened from 10 to 5",
        );
        one(
            |spec| spec["properties"]["name"]["maxLength"] = json!(10),
            "v1alpha1 .spec.name: maxLength tightened from 63 to 10",
        );
        one(
            |spec| spec["properties"]["tags"]["maxItems"] = json!(4),
            "v1alpha1 .spec.tags: maxItems tightened from (none) to 4",
        );
        one(
            |spec| spec["properties"]["replicas"]["exclusiveMaximum"] = json!(true),
            "v1alpha1 .spec.replicas: exclusiveMaximum added",
        );
    }

    #[test]
    fn a_new_pattern_format_or_rule_is_breaking() {
        one(
            |spec| spec["properties"]["name"]["pattern"] = json!("^[a-z]+$"),
            "v1alpha1 .spec.name: pattern changed from (none) to \"^[a-z]+$\"",
        );
        one(
            |spec| spec["properties"]["name"]["format"] = json!("hostname"),
            "v1alpha1 .spec.name: format changed from (none) to \"hostname\"",
        );
        one(
            |spec| {
                spec["x-kubernetes-validations"] =
                    json!([{"rule": "self.replicas >= 1", "message": "m"}]);
            },
            "v1alpha1 .spec: validation rule added: self.replicas >= 1",
        );
    }

    #[test]
    fn nested_items_and_maps_are_compared() {
        one(
            |spec| spec["properties"]["tags"]["items"]["type"] = json!("integer"),
            "v1alpha1 .spec.tags[]: type changed from \"string\" to \"integer\"",
        );
        one(
            |spec| spec["properties"]["labels"]["additionalProperties"]["maxLength"] = json!(8),
            "v1alpha1 .spec.labels{}: maxLength tightened from (none) to 8",
        );
        one(
            |spec| spec["properties"]["tags"]["x-kubernetes-list-type"] = json!("atomic"),
            "v1alpha1 .spec.tags: x-kubernetes-list-type changed from \"set\" to \"atomic\"",
        );
    }

    #[test]
    fn a_changed_default_or_lost_nullable_is_breaking() {
        one(
            |spec| spec["properties"]["replicas"]["default"] = json!(1),
            "v1alpha1 .spec.replicas: default changed from 3 to 1",
        );
        one(
            |spec| {
                spec["properties"]["name"]
                    .as_object_mut()
                    .unwrap()
                    .remove("nullable");
            },
            "v1alpha1 .spec.name: nullable no longer true",
        );
    }

    #[test]
    fn an_object_default_may_only_gain_the_defaults_of_new_fields() {
        let with_default = |properties: Value, default: Value| {
            let mut spec = base();
            spec["properties"]["nodes"] =
                json!({"type": "object", "default": default, "properties": properties});
            crd(spec)
        };
        let released = with_default(json!({"a": {"type": "integer"}}), json!({"a": 1}));
        let both = json!({"a": {"type": "integer"}, "b": {"type": "integer"}});
        let grown = with_default(both.clone(), json!({"a": 1, "b": 2}));
        assert!(breaking_changes(&released, &grown).is_empty());
        let changed = breaking_changes(&released, &with_default(both, json!({"a": 2, "b": 2})));
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert!(
            changed[0]
                .to_string()
                .starts_with("v1alpha1 .spec.nodes: default changed"),
            "{}",
            changed[0]
        );
    }

    #[test]
    fn a_released_version_must_stay_served_with_its_subresources() {
        let mut current = crd(base());
        current["spec"]["versions"][0]["served"] = json!(false);
        assert_eq!(
            breaking_changes(&crd(base()), &current)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec!["version v1alpha1: no longer served"]
        );
        let mut renamed = crd(base());
        renamed["spec"]["versions"][0]["name"] = json!("v1");
        assert_eq!(
            breaking_changes(&crd(base()), &renamed)[0].to_string(),
            "version v1alpha1: no longer in the CRD"
        );
        let without_status = crd_with(base(), json!({}));
        assert_eq!(
            breaking_changes(&crd(base()), &without_status)[0].to_string(),
            "version v1alpha1: subresource status changed from {} to null"
        );
        let mut moved = crd(base());
        moved["spec"]["group"] = json!("example.com");
        assert_eq!(
            breaking_changes(&crd(base()), &moved)[0].to_string(),
            "spec: group changed from \"dig.net\" to \"example.com\""
        );
    }

    #[test]
    fn a_new_version_beside_the_released_one_is_not_breaking() {
        let mut current = crd(base());
        let mut next = current["spec"]["versions"][0].clone();
        next["name"] = json!("v1alpha2");
        next["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            .as_object_mut()
            .unwrap()
            .remove("mode");
        current["spec"]["versions"][0]["storage"] = json!(false);
        current["spec"]["versions"]
            .as_array_mut()
            .unwrap()
            .push(next);
        assert!(breaking_changes(&crd(base()), &current).is_empty());
    }
}
