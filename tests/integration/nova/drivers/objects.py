"""Builds real Nova 34 objects and reads them back, for allotment's codec tests.

Runs with the Nova test venv's python, never ours. Reads one JSON list of commands on
stdin, writes one JSON list of answers on stdout:

- ``{"op": "primitive", "object": DESC}``: build DESC, answer ``obj_to_primitive()``;
  with ``"target_version"`` (and ``"manifest"``: object name -> version), the primitive
  Nova would send to a peer pinned at those versions.
- ``{"op": "legacy", "object": DESC}``: build the RequestSpec DESC and answer what
  SchedulerAPI sends at 4.0 (``to_legacy_request_spec_dict()`` and
  ``to_legacy_filter_properties_dict()`` through Nova's RPC serializer, as JSON on the
  wire), with ``"nova"``: the primitive of Nova's own ``RequestSpec.from_primitives``
  of that message, as its scheduler reads it.
- ``{"op": "from_primitive", "primitive": P}``: ``obj_from_primitive(P)``, answered as
  ``{"name", "version", "fields": {...}}`` (set fields only, nested objects alike), or
  ``{"error": "<class>: <message>"}`` when Nova refuses it.

DESC is JSON where ``{"$obj": "Name", ...fields}`` builds ``nova.objects.Name(**fields)``
and ``{"$set": [...]}`` a set.
"""

import copy
import json
import sys

from nova import context, objects
from nova.objects import base
from novaobj import build, read
from oslo_serialization import jsonutils
from oslo_versionedobjects import base as ovo_base


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
    if op == "legacy":
        spec = build(command["object"])
        serializer = base.NovaObjectSerializer()
        ctxt = context.get_admin_context()
        sent = {
            "request_spec": spec.to_legacy_request_spec_dict(),
            "filter_properties": spec.to_legacy_filter_properties_dict(),
        }
        wire = jsonutils.loads(jsonutils.dumps(serializer.serialize_entity(ctxt, sent)))
        received = serializer.deserialize_entity(ctxt, copy.deepcopy(wire))
        nova = objects.RequestSpec.from_primitives(
            ctxt, received["request_spec"], received["filter_properties"]
        )
        return {**wire, "nova": nova.obj_to_primitive()}
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
