"""Validate a manifest against docs/manifest.schema.json (jsonschema, the dev extra)."""
import json
import os

import pytest

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "manifest.schema.json")


def validator():
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (the dev extra) checks manifests")
    with open(SCHEMA_PATH) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def schema_errors(manifest):
    return sorted("{}: {}".format("/".join(map(str, e.absolute_path)), e.message)
                  for e in validator().iter_errors(manifest))


def assert_schema_valid(bundle_folder):
    with open(os.path.join(bundle_folder, "manifest.json")) as f:
        manifest = json.load(f)
    assert schema_errors(manifest) == []
    return manifest
