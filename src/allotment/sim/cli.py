"""``allotment sim run SCENARIO --out DIR`` and ``allotment sim compare A B ... --out DIR``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from allotment.errors import AllotmentError, ConfigError


def add_parser(sub: Any) -> None:
    sim = sub.add_parser(
        "sim", help="replay a workload on a virtual cloud through the real scheduler"
    )
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    run = sim_sub.add_parser(
        "run", help="one scenario (each of its [[policy]] blocks side by side)"
    )
    run.add_argument("scenario", help="scenario TOML file (see docs/simulator.md)")
    run.add_argument(
        "--url", help="replay on this allotment server over HTTP instead of in-process"
    )
    run.add_argument(
        "--token", help="X-Auth-Token for --url (prefer --token-file or ALLOTMENT_TOKEN)"
    )
    run.add_argument("--token-file", metavar="FILE", help="a file holding the token")
    run.add_argument(
        "--force", action="store_true", help="with --url: also on a server that has providers"
    )
    compare = sim_sub.add_parser(
        "compare", help="several scenarios' policies side by side in one report"
    )
    compare.add_argument("scenario", nargs="+", help="scenario TOML files")
    for cmd in (run, compare):
        cmd.add_argument("--out", required=True, help="folder for report.html and results.json")
        cmd.add_argument("--seed", type=int, help="override [workload] seed")
        cmd.add_argument("--requests", type=int, help="override [workload] requests")
        cmd.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table

    from allotment.sim import report, runner
    from allotment.sim.scenario import load_scenario

    console = Console(stderr=True)
    paths = args.scenario if isinstance(args.scenario, list) else [args.scenario]
    try:
        scenarios = [load_scenario(p) for p in paths]
    except ConfigError as exc:
        print(f"allotment sim: {exc}", file=sys.stderr)
        return 2
    overrides: dict[str, Any] = {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.requests is not None:
        overrides["requests"] = max(0, args.requests)
    if overrides:
        scenarios = [
            s.model_copy(update={"workload": s.workload.model_copy(update=overrides)})
            for s in scenarios
        ]
    connect = None
    if getattr(args, "url", None):
        from allotment.commands.api import CommandError, token_of
        from allotment.config import load_settings
        from allotment.sim import remote

        try:
            remote.check_scenario(scenarios[0])
            token = token_of(args, load_settings(None))
        except (ConfigError, CommandError) as exc:
            print(f"allotment sim: {exc}", file=sys.stderr)
            return 2
        connect = remote.connect(args.url, token, force=args.force)
    out = Path(args.out)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("requests · sim {task.fields[hours]:.0f} h"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=args.quiet,
    )

    def progress_for(label: str, total: int) -> Callable[[int, int, float], None]:
        task = progress.add_task(label, total=total, hours=0.0)

        def update(done: int, total: int, hours: float) -> None:
            progress.update(task, completed=done, hours=hours)

        return update

    try:
        with progress:
            results = runner.execute(scenarios, out, progress_for, connect)
    except ConfigError as exc:
        print(f"allotment sim: {exc}", file=sys.stderr)
        return 2
    except AllotmentError as exc:  # the server at --url failed or went away
        print(f"allotment sim: {exc.message}", file=sys.stderr)
        return 1
    table = Table(title=f"allotment sim — {', '.join(s.name for s in scenarios)}")
    table.add_column("")
    for result in results:
        table.add_column(result.policy, justify="right")
    for label, values in report.summary_rows(results):
        table.add_row(label, *values)
    Console().print(table)
    print(f"report: {(out / 'report.html').resolve()}")
    return 0
