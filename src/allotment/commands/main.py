"""Registration of the operator commands in ``allotment``'s parser, and their dispatch."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from allotment.commands import agent, audit, capacity, explain, hosts
from allotment.commands.api import CommandError, add_connection_options, connect
from allotment.config import Settings

COMMANDS = ("hosts", "explain", "capacity", "audit", "agent")


def register(sub: Any) -> None:
    for module in (hosts, explain, capacity, audit, agent):
        module.register(sub, add_connection_options)


def run(args: argparse.Namespace, settings: Settings) -> int:
    # Every request httpx makes is not news to an operator (the agent logs what it did).
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        if args.command == "agent":
            return agent.run(args, settings)
        with connect(args, settings) as api:
            if args.command == "hosts":
                return hosts.run(args, api)
            if args.command == "explain":
                return explain.run(args, api)
            if args.command == "capacity":
                return capacity.run(args, api, settings)
            return audit.run(args, api)
    except CommandError as exc:
        print(f"allotment {args.command}: {exc}", file=sys.stderr)
        return 1
