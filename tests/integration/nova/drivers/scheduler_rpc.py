"""Calls a scheduler the way nova-conductor does: Nova 34's own
``nova.scheduler.rpcapi.SchedulerAPI`` over oslo.messaging, ``nova.rpc`` initialised
from a nova.conf as ``nova.config.parse_args`` does for conductor.

Reads one JSON object on stdin: ``{"transport_url", "upgrade_level" (optional),
"rpc_response_timeout" (optional), "placement_url" (optional), "calls": [...]}``; each
call is (``claim_resources``: Nova's own ``scheduler.utils.claim_resources``, as conductor
claims an alternate)
``{"method", "context": {...}, ...arguments}``, objects as ``novaobj`` builds them
(``move_allocations``: Nova's report client moving allocations to a migration record, as
conductor does before a resize or migration; ``select_destinations`` with
``fill_provider_mapping``: also Nova's ``fill_provider_mapping`` on the first Selection,
answered as ``{"selections", "provider_uuids": {requester_id: [...]}}``;
``delete_allocations`` with ``instance_uuids``: Nova's report client deleting each
instance's allocations, as conductor does when a build is given up;
``claim_resources_on_destination``: a forced host, as conductor claims it with the
scheduler bypassed, ``{"instance": {uuid, project_id, user_id, host, node}, "source":
{uuid, host}, "dest": {uuid, host}}``, plus ``"migration": uuid`` for a live migration,
whose source allocations conductor first moves to the migration record). Writes
one JSON list: per call ``{"result": ...}`` (Selections read back as JSON) or
``{"error": {"class", "module", "message"}}``.
"""

import json
import os
import sys
import tempfile
from unittest import mock

from nova import config, context, exception, objects
from nova.conductor.tasks import migrate
from nova.scheduler import rpcapi, utils
from nova.scheduler.client import report
from novaobj import build, read


def conf_file(request):
    lines = ["[DEFAULT]", f"transport_url = {request['transport_url']}"]
    lines.append(f"rpc_response_timeout = {request.get('rpc_response_timeout', 30)}")
    lines.append("long_rpc_timeout = 120")
    if request.get("upgrade_level"):
        lines += ["[upgrade_levels]", f"scheduler = {request['upgrade_level']}"]
    if request.get("placement_url"):
        # As nova.conf points Nova's report client at a Placement without Keystone.
        lines += [
            "[placement]",
            "auth_type = admin_token",
            "token = admin",
            f"endpoint = {request['placement_url']}",
        ]
    handle, path = tempfile.mkstemp(suffix=".conf")
    with os.fdopen(handle, "w") as out:
        out.write("\n".join(lines) + "\n")
    return path


def call(api, item):
    ctxt = context.RequestContext(**item.get("context", {}))
    method = item["method"]
    if method == "select_destinations":
        spec = build(item["spec"])
        found = api.select_destinations(
            ctxt,
            spec,
            item.get("instance_uuids"),
            return_objects=item.get("return_objects", False),
            return_alternates=item.get("return_alternates", False),
        )
        if not item.get("fill_provider_mapping"):
            return found
        # What conductor does with the chosen host: each requested group learns the
        # providers that serve it, from the Selection's mappings.
        utils.fill_provider_mapping(spec, found[0][0])
        return {
            "selections": found,
            "provider_uuids": {
                group.requester_id: list(group.provider_uuids) for group in spec.requested_resources
            },
        }
    if method == "move_allocations":
        # What conductor does before a resize or migration: the source host's
        # allocations move from the instance to the migration record.
        return report.report_client_singleton().move_allocations(
            ctxt, item["source"], item["target"]
        )
    if method == "delete_allocations":
        client = report.report_client_singleton()
        return [
            client.delete_allocation_for_instance(ctxt, uuid, force=True)
            for uuid in item["instance_uuids"]
        ]
    if method == "claim_resources":
        # What conductor does with an alternate when a build is rescheduled.
        return utils.claim_resources(
            ctxt,
            report.report_client_singleton(),
            build(item["spec"]),
            item["instance_uuid"],
            json.loads(item["allocation_request"]),
            allocation_request_version=item["allocation_request_version"],
        )
    if method == "claim_resources_on_destination":
        return forced_claim(ctxt, item)
    arguments = {k: build(v) for k, v in item.items() if k not in ("method", "context")}
    getattr(api, method)(ctxt, **arguments)
    return None


def forced_claim(ctxt, item):
    """What conductor does for ``evacuate --force`` (``_allocate_for_evacuate_dest_host``)
    and a forced live migration (``LiveMigrationTask._execute``): Nova's own
    ``claim_resources_on_destination``, after Nova's own
    ``replace_allocation_with_migration`` for a live migration. The compute nodes are
    conductor's database reads; there is no Nova database here, so they are the nodes the
    test names. Answers the allocations the migration record took over (live migration)."""
    client = report.report_client_singleton()
    instance = objects.Instance(ctxt, **item["instance"])
    source = objects.ComputeNode(ctxt, **item["source"])
    dest = objects.ComputeNode(ctxt, **item["dest"])
    if "migration" not in item:
        utils.claim_resources_on_destination(ctxt, client, instance, source, dest)
        return None
    migration = objects.Migration(ctxt, uuid=item["migration"])
    with mock.patch.object(objects.ComputeNode, "get_by_host_and_nodename", return_value=source):
        _, held = migrate.replace_allocation_with_migration(ctxt, instance, migration)
    utils.claim_resources_on_destination(
        ctxt, client, instance, source, dest, source_allocations=held, consumer_generation=None
    )
    return held


def answer(api, item):
    """One call's answer: ``{"result"}`` or ``{"error"}``."""
    try:
        return {"result": read(call(api, item))}
    except exception.NovaException as exc:
        return {
            "error": {
                "class": type(exc).__name__,
                "module": type(exc).__module__,
                "nova_class": [c.__name__ for c in type(exc).__mro__],
                "message": exc.format_message(),
            }
        }
    except Exception as exc:  # a remote error of another kind: the test shows it
        return {
            "error": {
                "class": type(exc).__name__,
                "module": type(exc).__module__,
                "nova_class": [],
                "message": str(exc),
            }
        }


def main():
    request = json.load(sys.stdin)
    objects.register_all()
    config.parse_args(
        ["nova-conductor"], default_config_files=[conf_file(request)], configure_db=False
    )
    api = rpcapi.SchedulerAPI()
    json.dump([answer(api, item) for item in request["calls"]], sys.stdout, default=str)


if __name__ == "__main__":
    main()
