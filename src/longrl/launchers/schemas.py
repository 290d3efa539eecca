"""Validation of the Kubernetes objects longrl makes: built-in kinds against the Kubernetes OpenAPI
schemas (kubernetes-validate), custom resources against their CRD's schema, strictly (unknown
fields are errors, as a typo would silently be dropped by the API server otherwise)."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

KUBERNETES_VERSION = "1.33.0"


def _strict(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` wherever it lists properties and keeps no unknown fields."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@functools.lru_cache(maxsize=16)
def _crd_schemas(crd_file: str) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for document in yaml.safe_load_all(Path(crd_file).read_text()):
        if not document or document.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = document["spec"]["group"], document["spec"]["names"]["kind"]
        for version in document["spec"]["versions"]:
            schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
            # metadata is checked by the API server itself; the CRD only says "object".
            schema.setdefault("properties", {})["metadata"] = {"type": "object"}
            found[(f"{group}/{version['name']}", kind)] = _strict(schema)
    return found


def validation_errors(obj: dict[str, Any], crd_files: Iterable[str | Path] = ()) -> list[str]:
    """Why ``obj`` would be rejected (or silently changed) by the API server; empty when it is valid."""
    import jsonschema

    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    for crd_file in crd_files:
        schema = _crd_schemas(str(crd_file)).get(key)
        if schema is not None:
            validator = jsonschema.Draft7Validator(schema)
            return [
                f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
                for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
            ]
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {key[0]} {key[1]}: give the CRD file"]
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(p) for p in error.path) or "<root>"
        return [f"{path}: {error.message}"]
    return []
