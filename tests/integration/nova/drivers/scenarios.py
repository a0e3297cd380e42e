"""Plays scenarios against one scheduler, each from the same fleet: per scenario, Nova
34's own SchedulerAPI ``select_destinations`` (``scheduler_rpc``'s call), then what
leaves the fleet as it was: Nova's report client deletes the scenario's allocations
(conductor giving a build up) and every compute node is saved (``novadb``'s
``touch_nodes``, the computes reporting), so a nova-scheduler's host states drop what
they consumed.

Reads one JSON object on stdin: ``{"transport_url", "placement_url", "api", "cells":
{name: url}, "scenarios": [call, ...]}``, each call a ``select_destinations`` as
``scheduler_rpc`` takes it. Writes one JSON list: per scenario the call's answer.
"""

import json
import sys

import novadb
import scheduler_rpc
from nova import config, objects
from nova.scheduler import rpcapi


def main():
    request = json.load(sys.stdin)
    objects.register_all()
    first = next(iter(request["cells"].values()))
    config.parse_args(
        ["nova-conductor"],
        default_config_files=[
            scheduler_rpc.conf_file(request),
            novadb.conf_file(request["api"], first, request["transport_url"]),
        ],
    )
    api = rpcapi.SchedulerAPI()
    answers = []
    for item in request["scenarios"]:
        answers.append(scheduler_rpc.answer(api, item))
        deleted = scheduler_rpc.answer(
            api,
            {
                "method": "delete_allocations",
                "context": item["context"],
                "instance_uuids": item["instance_uuids"],
            },
        )
        if "error" in deleted:
            raise RuntimeError(f"could not delete the scenario's allocations: {deleted}")
        novadb.touch_nodes({"cells": list(request["cells"])})
    json.dump(answers, sys.stdout, default=str)


if __name__ == "__main__":
    main()
