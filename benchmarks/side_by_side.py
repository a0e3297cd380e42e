"""placement_bench.py against allotment and the real OpenStack Placement 16, in one run.

    .venv/bin/python benchmarks/side_by_side.py --providers 1000 --providers 10000 \\
        --out /tmp/side_by_side.json

For each provider count, each server is started fresh on its own SQLite database (allotment:
``allotment serve --auth noauth``; OpenStack: ``run_real_placement.sh``, gunicorn with one
worker), populated and measured by ``placement_bench.py`` (same workload, same client, same
queries), and stopped before the next one starts, so the two never compete for the CPUs.
Prints one JSON summary with both results and the ratios (OpenStack / allotment) of the
median candidate latencies; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from serve import allotment_server

QUERIES = ("basic", "required_avx2_member_of_agg_a", "limit_10")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def start_openstack(tools: Path, folder: Path, port: int) -> int:
    out = subprocess.run(
        [str(tools / "run_real_placement.sh"), str(folder), str(port)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def stop(pid: int) -> None:
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, 9)


def bench(tools: Path, url: str, pid: int, args: argparse.Namespace, label: str) -> Any:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [
                sys.executable,
                str(tools / "placement_bench.py"),
                "--url",
                url,
                "--token",
                "admin",
                "--providers",
                str(args.n),
                "--samples",
                str(args.samples),
                "--consumers",
                str(args.consumers),
                "--concurrent-providers",
                str(args.concurrent_providers),
                "--server-pid",
                str(pid),
                "--label",
                label,
                "--out",
                out.name,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return json.loads(Path(out.name).read_text())


def compare(ours: Any, theirs: Any) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for name in QUERIES:
        a = ours["allocation_candidates"][name]
        b = theirs["allocation_candidates"][name]
        table[name] = {
            "allotment_median_ms": a["latency"]["median_ms"],
            "openstack_median_ms": b["latency"]["median_ms"],
            "speedup": round(b["latency"]["median_ms"] / a["latency"]["median_ms"], 1),
            "allotment_server_cpu_ms": a["server_cpu_ms_per_request"],
            "openstack_server_cpu_ms": b["server_cpu_ms_per_request"],
            "same_candidate_count": a["candidates"] == b["candidates"],
        }
    table["claims_sequential_per_s"] = {
        "allotment": ours["claims_sequential"]["claims_per_s"],
        "openstack": theirs["claims_sequential"]["claims_per_s"],
    }
    table["verification_ok"] = {
        "allotment": ours["verification"]["ok"],
        "openstack": theirs["verification"]["ok"],
    }
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--providers", type=int, action="append", required=True)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--consumers", type=int, default=200)
    parser.add_argument("--concurrent-providers", type=int, default=5)
    parser.add_argument(
        "--tools", default=str(Path(__file__).resolve().parents[2] / "shared/tools")
    )
    parser.add_argument("--port", type=int, default=18990, help="ours; OpenStack gets port+1")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    tools = Path(args.tools)
    if not (tools / "placement_bench.py").exists():
        parser.error(f"{tools} has no placement_bench.py: point --tools at the shared tools")
    runs = []
    for n in args.providers:
        args.n = n
        with tempfile.TemporaryDirectory(prefix="side-by-side-") as tmp:
            folder = Path(tmp)
            (folder / "allotment").mkdir()
            log(f"{n} providers: allotment")
            ours_dir = folder / "allotment"
            with allotment_server(ours_dir / "db.sqlite", ours_dir, args.port) as (url, pid):
                ours = bench(tools, url, pid, args, "allotment")
            log(f"{n} providers: OpenStack Placement 16")
            real = start_openstack(tools, folder / "openstack", args.port + 1)
            try:
                theirs = bench(tools, f"http://127.0.0.1:{args.port + 1}", real, args, "openstack")
            finally:
                stop(real)
        result = {"providers": n, "comparison": compare(ours, theirs)}
        log(json.dumps(result["comparison"]))
        runs.append({**result, "allotment": ours, "openstack": theirs})
    text = json.dumps({"benchmark": "side_by_side", "runs": runs}, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
