"""Builds real Nova 34 objects and reads them back, for allotment's codec tests.

Runs with the Nova test venv's python, never ours. Reads one JSON list of commands on
stdin, writes one JSON list of answers on stdout:

- ``{"op": "primitive", "object": DESC}``: build DESC, answer ``obj_to_primitive()``;
  with ``"target_version"`` (and ``"manifest"``: object name -> version), the primitive
  Nova would send to a peer pinned at those versions.
- ``{"op": "from_primitive", "primitive": P}``: ``obj_from_primitive(P)``, answered as
  ``{"name", "version", "fields": {...}}`` (set fields only, nested objects alike), or
  ``{"error": "<class>: <message>"}`` when Nova refuses it.

DESC is JSON where ``{"$obj": "Name", ...fields}`` builds ``nova.objects.Name(**fields)``
and ``{"$set": [...]}`` a set.
"""

import json
import sys

from nova import objects
from nova.objects import base
from oslo_versionedobjects import base as ovo_base


def build(desc):
    if isinstance(desc, list):
        return [build(item) for item in desc]
    if not isinstance(desc, dict):
        return desc
    if "$set" in desc:
        return {build(item) for item in desc["$set"]}
    if "$obj" in desc:
        cls = getattr(objects, desc["$obj"])
        fields = {k: build(v) for k, v in desc.items() if k != "$obj"}
        if desc["$obj"] == "ImageMeta":
            return cls.from_dict(fields)
        return cls(**fields)
    return {key: build(value) for key, value in desc.items()}


def read(value):
    if isinstance(value, base.NovaObject):
        return {
            "name": value.obj_name(),
            "version": value.VERSION,
            "fields": {
                name: read(getattr(value, name))
                for name in sorted(value.fields)
                if value.obj_attr_is_set(name)
            },
        }
    if isinstance(value, set | frozenset):
        return sorted(read(v) for v in value)
    if isinstance(value, list | tuple):
        return [read(v) for v in value]
    if isinstance(value, dict):
        return {str(k): read(v) for k, v in value.items()}
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def run(command):
    op = command["op"]
    if op == "primitive":
        obj = build(command["object"])
        if "target_version" in command:
            # As a pinned peer receives it: every nested object at the version the
            # manifest names (Nova 34's own, except the ones overridden).
            manifest = ovo_base.obj_tree_get_versions(obj.obj_name())
            manifest.update(command.get("manifest", {}))
            manifest[obj.obj_name()] = command["target_version"]
            return obj.obj_to_primitive(
                target_version=command["target_version"], version_manifest=manifest
            )
        return obj.obj_to_primitive()
    if op == "from_primitive":
        try:
            return read(base.NovaObject.obj_from_primitive(command["primitive"]))
        except Exception as exc:  # the answer the test checks
            return {"error": f"{type(exc).__name__}: {exc}"}
    raise ValueError(f"unknown op {op!r}")


def main():
    objects.register_all()
    commands = json.load(sys.stdin)
    json.dump([run(c) for c in commands], sys.stdout, default=str)


if __name__ == "__main__":
    main()
