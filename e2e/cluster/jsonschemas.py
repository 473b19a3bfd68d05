#!/usr/bin/env python3
"""JSON schemas for kubeconform, made offline.

  jsonschemas.py kubernetes SOURCE_DIR OUT_DIR
      SOURCE_DIR is one version folder of the schemas that the PyPI package kubernetes-validate
      ships (e.g. .../kubernetes-json-schema/v1.34.0-local-strict); its kind files point into a
      shared _definitions.json. Writes one self-contained schema per group/version/kind into
      OUT_DIR, named as kubeconform's default template expects:
      {{.ResourceKind}}{{.KindSuffix}}.json, e.g. deployment-apps-v1.json, service-v1.json.

  jsonschemas.py crds OUT_DIR CRD_YAML...
      Turns every version of every CustomResourceDefinition into a strict JSON schema at
      OUT_DIR/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json.

Needs PyYAML for `crds` (installed with kubernetes-validate in the same venv).
"""

import copy
import json
import os
import sys

DEFINITIONS_REF = "/api/_definitions.json#/$defs/"  # as kind files point into the shared file
LOCAL_REF = "#/$defs/"  # as definitions point at each other


def kind_suffix(group, version):
    # kubeconform: "-" + first label of the group (none for the core group) + "-" + version.
    if group:
        return "-" + group.split(".")[0].lower() + "-" + version.lower()
    return "-" + version.lower()


def referenced_definitions(node, found, definitions):
    """Collects, transitively, the names of the shared definitions a schema node points to."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        name = None
        if isinstance(ref, str):
            for prefix in (DEFINITIONS_REF, LOCAL_REF):
                if ref.startswith(prefix):
                    name = ref[len(prefix):]
        if name is not None:
            if name not in found:
                if name not in definitions:
                    raise SystemExit(f"jsonschemas.py: definition {name!r} is referenced but missing")
                found.add(name)
                referenced_definitions(definitions[name], found, definitions)
        for value in node.values():
            referenced_definitions(value, found, definitions)
    elif isinstance(node, list):
        for value in node:
            referenced_definitions(value, found, definitions)


def local_refs(node):
    """Points references at the schema's own $defs instead of the shared file."""
    if isinstance(node, dict):
        return {
            key: (LOCAL_REF + value[len(DEFINITIONS_REF):])
            if key == "$ref" and isinstance(value, str) and value.startswith(DEFINITIONS_REF)
            else local_refs(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [local_refs(value) for value in node]
    return node


def write_json(path, document):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as out:
        json.dump(document, out, separators=(",", ":"), sort_keys=True)
    os.replace(temporary, path)


def kubernetes(source_dir, out_dir):
    definitions_file = os.path.join(source_dir, "_definitions.json")
    try:
        with open(definitions_file, encoding="utf-8") as f:
            definitions = json.load(f)["$defs"]
    except (OSError, ValueError, KeyError) as error:
        raise SystemExit(f"jsonschemas.py: cannot read definitions {definitions_file}: {error}")
    written = 0
    for name in sorted(os.listdir(source_dir)):
        if not name.endswith(".json") or name.startswith("_") or name == "all.json":
            continue
        path = os.path.join(source_dir, name)
        with open(path, encoding="utf-8") as f:
            try:
                schema = json.load(f)
            except ValueError as error:
                raise SystemExit(f"jsonschemas.py: {path} is not JSON: {error}")
        kinds = schema.get("x-kubernetes-group-version-kind")
        if not kinds:
            continue  # a part of other kinds, never a document of its own
        needed = set()
        referenced_definitions(schema, needed, definitions)
        standalone = local_refs({key: value for key, value in schema.items() if key != "$id"})
        if needed:
            standalone["$defs"] = {item: local_refs(definitions[item]) for item in sorted(needed)}
        for gvk in kinds:
            file_name = gvk["kind"].lower() + kind_suffix(gvk.get("group", ""), gvk["version"]) + ".json"
            write_json(os.path.join(out_dir, file_name), standalone)
            written += 1
    if written == 0:
        raise SystemExit(f"jsonschemas.py: no kind schemas found in {source_dir}")
    print(f"wrote {written} schemas to {out_dir}")


def openapi_to_jsonschema(node, strict):
    """OpenAPI v3 (structural CRD schema) to JSON schema: the Kubernetes extensions become plain
    JSON-schema rules; unknown fields are refused unless the CRD keeps them (the API server
    would silently drop them, which hides typos)."""
    if isinstance(node, list):
        return [openapi_to_jsonschema(value, strict) for value in node]
    if not isinstance(node, dict):
        return node
    out = {key: openapi_to_jsonschema(value, strict) for key, value in node.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    keeps_unknown = out.get("x-kubernetes-preserve-unknown-fields", False)
    is_object = out.get("type") in ("object", ["object", "null"])
    if strict and is_object and not keeps_unknown and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def crds(out_dir, files):
    try:
        import yaml
    except ImportError:
        raise SystemExit("jsonschemas.py: PyYAML is needed for crds (pip install pyyaml)")
    written = 0
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                documents = [d for d in yaml.safe_load_all(f) if d]
        except (OSError, yaml.YAMLError) as error:
            raise SystemExit(f"jsonschemas.py: cannot read CRD file {path}: {error}")
        for crd in documents:
            if crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd.get("spec") or {}
            group, kind = spec.get("group"), (spec.get("names") or {}).get("kind")
            if not group or not kind:
                raise SystemExit(f"jsonschemas.py: {path}: CRD {crd.get('metadata', {}).get('name')} lacks group or kind")
            for version in spec.get("versions") or []:
                source = ((version.get("schema") or {}).get("openAPIV3Schema"))
                if source is None:
                    raise SystemExit(f"jsonschemas.py: {path}: {kind} {version.get('name')} has no openAPIV3Schema")
                schema = openapi_to_jsonschema(copy.deepcopy(source), strict=True)
                properties = schema.setdefault("properties", {})
                # The API server fills these in for every custom resource; describe them exactly.
                properties["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
                properties["kind"] = {"type": "string", "enum": [kind]}
                properties.setdefault("metadata", {"type": "object"})
                schema["$schema"] = "http://json-schema.org/draft-07/schema#"
                target = os.path.join(out_dir, group, f"{kind.lower()}_{version['name']}.json")
                write_json(target, schema)
                written += 1
    print(f"wrote {written} CRD schemas to {out_dir}")


def main(argv):
    if len(argv) == 4 and argv[1] == "kubernetes":
        kubernetes(argv[2], argv[3])
    elif len(argv) >= 3 and argv[1] == "crds":
        crds(argv[2], argv[3:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
