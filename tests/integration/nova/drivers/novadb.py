"""Makes and fills Nova's databases the way a Nova deployment does: the schema by Nova's
own ``nova-manage`` (``api_db sync``, ``cell_v2 map_cell0``, ``cell_v2 create_cell``,
``db sync``), the rows by Nova's own objects (Service, ComputeNode, Aggregate, Instance,
HostMapping) through a RequestContext targeted at the host's cell.

Reads one JSON object on stdin: ``{"api", "cell0", "cells": {name: url},
"transport_url", "steps": [...]}``. Steps:

- ``{"do": "schema"}``: every database made by nova-manage; answers the cell uuids by name;
- ``{"do": "host", "cell", "host", "nodes": [{uuid, hypervisor_hostname, vcpus,
  memory_mb, local_gb, numa: [{id, cpuset, pcpuset, memory, siblings, memory_usage,
  physnets, tunneled, socket}], pci: [pools],
  stats, metrics, cpu_info}], "map": true, "last_seen_up_ago"}``: a nova-compute service
  (its last state report that many seconds old, if given) and its compute nodes (and the
  host mapping);
- ``{"do": "aggregate", "name", "hosts", "metadata"}``: answers its uuid;
- ``{"do": "instance", "cell", "host", "node", "uuid", "project_id", "user_id"}``;
- ``{"do": "service", "cell", "host", "disabled", "disabled_reason", "forced_down",
  "last_seen_up_ago", "version"}``: change a service as ``openstack compute service set``
  does (``version``: as a nova-compute of that service version writes it when it starts);
- ``{"do": "delete_node", "cell", "uuid"}``, ``{"do": "delete_instance", "cell", "uuid"}``,
  ``{"do": "aggregate_remove_host", "uuid", "host"}``, ``{"do": "aggregate_metadata",
  "uuid", "metadata"}``;
- ``{"do": "touch_nodes", "cells": [...]}``: every compute node of the cells saved (Nova's
  database API dates it now), as a compute's resource tracker saves it when it reports,
  in a later second than anything before the call: a nova-scheduler keeps what it
  consumed on a host state until its node is newer than that state.

Writes one JSON list, one answer per step.
"""

import datetime
import json
import os
import sys
import tempfile
import time


def conf_file(api, main, transport_url):
    lines = [
        "[DEFAULT]",
        f"transport_url = {transport_url}",
        "[api_database]",
        f"connection = {api}",
        "[database]",
        f"connection = {main}",
    ]
    handle, path = tempfile.mkstemp(suffix=".conf")
    with os.fdopen(handle, "w") as out:
        out.write("\n".join(lines) + "\n")
    return path


def schema(request):
    """What an operator runs, in order: ``nova-manage api_db sync``, ``cell_v2 map_cell0``,
    ``cell_v2 create_cell`` per cell, ``db sync`` (the first cell and cell0) and, per
    further cell, its migrations through a context targeted at it, as ``db sync`` does
    for cell0. nova-manage's own command classes, in one process (each nova-manage run
    costs seconds of imports on a loaded machine)."""
    from nova import context, objects
    from nova.cmd import manage
    from nova.db import migration

    if manage.ApiDbCommands().sync() not in (None, 0):
        raise RuntimeError("nova-manage api_db sync failed")
    commands = manage.CellV2Commands()
    if commands.map_cell0(database_connection=request["cell0"]) not in (None, 0):
        raise RuntimeError("nova-manage cell_v2 map_cell0 failed")
    for index, (name, url) in enumerate(request["cells"].items()):
        # Each cell has its own message bus; only its URL is stored (nothing connects).
        transport = request["transport_url"] + ("" if index == 0 else f"-{name}")
        answer = commands.create_cell(name=name, database_connection=url, transport_url=transport)
        if answer not in (None, 0):
            raise RuntimeError(f"nova-manage cell_v2 create_cell {name} answered {answer}")
    if manage.DbCommands().sync() not in (None, 0):
        raise RuntimeError("nova-manage db sync failed")
    ctxt = context.get_admin_context()
    first = next(iter(request["cells"]))
    for mapping in objects.CellMappingList.get_all(ctxt):
        if mapping.name in request["cells"] and mapping.name != first:
            with context.target_cell(ctxt, mapping) as cctxt:
                migration.db_sync(context=cctxt)


def cells():
    from nova import context, objects

    ctxt = context.get_admin_context()
    return {m.name: m.uuid for m in objects.CellMappingList.get_all(ctxt)}


def cell_context(name):
    from nova import context, objects

    ctxt = context.get_admin_context()
    mapping = next(m for m in objects.CellMappingList.get_all(ctxt) if m.name == name)
    return ctxt, mapping


def numa(cells):
    from nova import objects

    return objects.NUMATopology(
        cells=[
            objects.NUMACell(
                id=c["id"],
                cpuset=set(c["cpuset"]),
                pcpuset=set(c.get("pcpuset", [])),
                memory=c["memory"],
                cpu_usage=c.get("cpu_usage", 0),
                memory_usage=c.get("memory_usage", 0),
                pinned_cpus=set(c.get("pinned_cpus", [])),
                siblings=[set(s) for s in c.get("siblings", [])],
                mempages=[],
                # As the compute reports [neutron_physnet_*] / [neutron_tunnel] numa_nodes.
                network_metadata=objects.NetworkMetadata(
                    physnets=set(c.get("physnets", [])), tunneled=c.get("tunneled", False)
                ),
                socket=c.get("socket"),
            )
            for c in cells
        ]
    )


def host(step):
    from nova import context, objects

    ctxt, mapping = cell_context(step["cell"])
    with context.target_cell(ctxt, mapping) as cctxt:
        service = objects.Service(
            cctxt, host=step["host"], binary="nova-compute", topic="compute", report_count=1
        )
        service.create()
        if "last_seen_up_ago" in step:
            # Before its nodes exist, so no reader ever sees the service fresh.
            age(cctxt, service.id, step["last_seen_up_ago"])
        for node in step["nodes"]:
            compute = objects.ComputeNode(
                cctxt,
                uuid=node["uuid"],
                host=step["host"],
                hypervisor_hostname=node["hypervisor_hostname"],
                service_id=None,
                vcpus=node["vcpus"],
                memory_mb=node["memory_mb"],
                local_gb=node["local_gb"],
                vcpus_used=0,
                memory_mb_used=0,
                local_gb_used=0,
                free_ram_mb=node["memory_mb"],
                free_disk_gb=node["local_gb"],
                hypervisor_type="QEMU",
                hypervisor_version=8002000,
                cpu_info=json.dumps(node.get("cpu_info", {})),
                current_workload=0,
                running_vms=0,
                disk_available_least=node["local_gb"],
                host_ip=node.get("host_ip", "192.0.2.10"),
                supported_hv_specs=[objects.HVSpec.from_list(["x86_64", "kvm", "hvm"])],
                metrics=json.dumps(node.get("metrics", [])),
                stats=node.get("stats", {}),
                cpu_allocation_ratio=node.get("cpu_allocation_ratio", 4.0),
                ram_allocation_ratio=node.get("ram_allocation_ratio", 1.0),
                disk_allocation_ratio=1.0,
                pci_device_pools=objects.PciDevicePoolList(
                    objects=[objects.PciDevicePool(**pool) for pool in node.get("pci", [])]
                ),
                numa_topology=numa(node["numa"])._to_json() if node.get("numa") else None,
            )
            compute.create()
    if step.get("map", True):
        objects.HostMapping(ctxt, host=step["host"], cell_mapping=mapping).create()
    return service.id


def service(step):
    from nova import context, objects

    ctxt, mapping = cell_context(step["cell"])
    with context.target_cell(ctxt, mapping) as cctxt:
        found = objects.Service.get_by_compute_host(cctxt, step["host"])
        for key in ("disabled", "disabled_reason", "forced_down"):
            if key in step:
                setattr(found, key, step[key])
        if "report" in step:
            found.report_count += 1  # a state report: last_seen_up becomes now
        found.save()
        if "last_seen_up_ago" in step:
            age(cctxt, found.id, step["last_seen_up_ago"])
        if "version" in step:
            from nova.db.main import api as db

            db.service_update(cctxt, found.id, {"version": step["version"]})
        return found.id


def age(cctxt, service_id, seconds):
    """What a compute that stopped reporting leaves behind: an old heartbeat (naive UTC,
    as Nova's db servicegroup driver writes it)."""
    from nova.db.main import api as db

    when = datetime.datetime.utcnow() - datetime.timedelta(seconds=seconds)
    db.service_update(cctxt, service_id, {"last_seen_up": when})


def aggregate(step):
    from nova import context, objects

    ctxt = context.get_admin_context()
    made = objects.Aggregate(ctxt, name=step["name"], metadata=step.get("metadata", {}))
    made.create()
    for name in step.get("hosts", []):
        made.add_host(name)
    return made.uuid


def instance(step):
    from nova import context, objects

    ctxt, mapping = cell_context(step["cell"])
    with context.target_cell(ctxt, mapping) as cctxt:
        compute = objects.ComputeNode.get_by_host_and_nodename(cctxt, step["host"], step["node"])
        made = objects.Instance(
            cctxt,
            uuid=step["uuid"],
            host=step["host"],
            node=step["node"],
            compute_id=compute.id,
            project_id=step.get("project_id", "p1"),
            user_id=step.get("user_id", "u1"),
            vm_state="active",
        )
        made.create()
    return made.uuid


def delete_node(step):
    from nova import context, objects

    ctxt, mapping = cell_context(step["cell"])
    with context.target_cell(ctxt, mapping) as cctxt:
        objects.ComputeNode.get_by_uuid(cctxt, step["uuid"]).destroy()


def delete_instance(step):
    from nova import context, objects

    ctxt, mapping = cell_context(step["cell"])
    with context.target_cell(ctxt, mapping) as cctxt:
        objects.Instance.get_by_uuid(cctxt, step["uuid"]).destroy()


def aggregate_remove_host(step):
    from nova import context, objects

    found = objects.Aggregate.get_by_uuid(context.get_admin_context(), step["uuid"])
    found.delete_host(step["host"])


def aggregate_metadata(step):
    from nova import context, objects

    found = objects.Aggregate.get_by_uuid(context.get_admin_context(), step["uuid"])
    found.update_metadata(step["metadata"])


def touch_nodes(step):
    from nova import context, objects

    # The column keeps whole seconds: a host state consumed earlier in this second would
    # still be newer than the node.
    time.sleep(1.05 - time.time() % 1)
    for name in step["cells"]:
        ctxt, mapping = cell_context(name)
        with context.target_cell(ctxt, mapping) as cctxt:
            for compute in objects.ComputeNodeList.get_all(cctxt):
                compute.save()


STEPS = {
    "host": host,
    "service": service,
    "aggregate": aggregate,
    "instance": instance,
    "delete_node": delete_node,
    "delete_instance": delete_instance,
    "aggregate_remove_host": aggregate_remove_host,
    "aggregate_metadata": aggregate_metadata,
    "touch_nodes": touch_nodes,
}


def main():
    request = json.load(sys.stdin)
    answers = []
    steps = request["steps"]
    from nova import config, objects

    objects.register_all()
    first = next(iter(request["cells"].values()))
    config.parse_args(
        ["nova-scheduler"],
        default_config_files=[conf_file(request["api"], first, request["transport_url"])],
    )
    for step in steps:
        if step["do"] == "schema":
            schema(request)
            answers.append(cells())
        else:
            answers.append(STEPS[step["do"]](step))
    json.dump(answers, sys.stdout, default=str)


if __name__ == "__main__":
    main()
