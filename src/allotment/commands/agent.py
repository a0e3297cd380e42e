"""``allotment agent [run|show|deregister]``: the host agent's command line."""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path
from typing import Any

from allotment.agent.machine import MachineError
from allotment.agent.runner import Agent, AgentOptions
from allotment.commands import render
from allotment.commands.api import CommandError, token_of
from allotment.config import Settings

LOG = logging.getLogger("allotment.agent")


def register(sub: Any, connection: Any) -> None:
    parser = sub.add_parser(
        "agent", help="publish this machine to placement and heartbeat to the scheduler"
    )
    parser.add_argument(
        "action",
        nargs="?",
        choices=["run", "show", "deregister"],
        default="run",
        help="run (default): publish and heartbeat; show: print what would be published; "
        "deregister: remove this host from the scheduler and placement",
    )
    connection(parser, local=False)
    parser.add_argument("--host", dest="agent_host", help="host name (default: this machine's)")
    parser.add_argument("--nodename", help="node name (default: the host name)")
    parser.add_argument(
        "--node-uuid", help="the compute node's provider uuid (default: derived from the node name)"
    )
    parser.add_argument("--root", default="/", help="where /proc and /sys are (default /)")
    parser.add_argument(
        "--disk-path", default="/var/lib", help="the file system instances use (default /var/lib)"
    )
    parser.add_argument(
        "--interval", type=float, default=10.0, help="seconds between heartbeats (default 10)"
    )
    parser.add_argument(
        "--refresh", type=float, default=300.0, help="seconds between re-reading the machine"
    )
    parser.add_argument(
        "--max-backoff", type=float, default=60.0, help="longest wait between retries (s)"
    )
    parser.add_argument("--reserved-memory-mb", type=int, default=512)
    parser.add_argument("--reserved-disk-gb", type=int, default=0)
    parser.add_argument("--reserved-vcpus", type=int, default=0)
    parser.add_argument("--cpu-allocation-ratio", type=float, default=4.0)
    parser.add_argument("--ram-allocation-ratio", type=float, default=1.0)
    parser.add_argument("--disk-allocation-ratio", type=float, default=1.0)
    parser.add_argument("--hypervisor-type", default="QEMU")
    parser.add_argument("--once", action="store_true", help="publish and report once, then exit")


def options_of(args: argparse.Namespace, settings: Settings) -> AgentOptions:
    if args.interval <= 0 or args.refresh <= 0 or args.max_backoff <= 0:
        raise CommandError("--interval, --refresh and --max-backoff must be positive")
    down = settings.scheduler.service_down_time
    if args.interval >= down:
        raise CommandError(
            f"--interval {args.interval:g} s must be shorter than the scheduler's "
            f"service_down_time ({down} s), or the host is seen down between heartbeats"
        )
    for name in ("cpu_allocation_ratio", "ram_allocation_ratio", "disk_allocation_ratio"):
        if getattr(args, name) <= 0:
            raise CommandError(f"--{name.replace('_', '-')} must be positive")
    url = args.url or f"http://{settings.server.host}:{settings.server.port}"
    return AgentOptions(
        url=url,
        token=token_of(args, settings),
        host=args.agent_host or "",
        nodename=args.nodename or "",
        node_uuid=args.node_uuid or "",
        root=Path(args.root),
        disk_path=args.disk_path,
        scheduler_prefix=settings.server.scheduler_prefix,
        interval=args.interval,
        refresh=args.refresh,
        max_backoff=args.max_backoff,
        reserved_memory_mb=args.reserved_memory_mb,
        reserved_disk_gb=args.reserved_disk_gb,
        reserved_vcpus=args.reserved_vcpus,
        cpu_allocation_ratio=args.cpu_allocation_ratio,
        ram_allocation_ratio=args.ram_allocation_ratio,
        disk_allocation_ratio=args.disk_allocation_ratio,
        hypervisor_type=args.hypervisor_type,
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    agent = Agent(options_of(args, settings))
    try:
        if args.action == "show":
            try:
                found = agent.describe()
            except MachineError as exc:
                raise CommandError(str(exc)) from None
            render.emit_json(found)
            return 0
        if args.action == "deregister":
            return agent.deregister()

        def stop(signum: int, frame: Any) -> None:
            LOG.info("signal %d: stopping", signum)
            agent.stopping.set()

        previous = [signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)]
        try:
            return agent.run(once=args.once)
        finally:
            for sig, handler in zip((signal.SIGTERM, signal.SIGINT), previous, strict=True):
                signal.signal(sig, handler)
    finally:
        agent.close()
