"""Run a scenario's policies (or several scenarios' side by side) and write the results:
``results.json`` (every series and total) and the self-contained ``report.html``."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from allotment.sim import report
from allotment.sim.engine import Connect, PolicyResult, Simulation, _size_order
from allotment.sim.scenario import Scenario
from allotment.sim.workload import generate

# (policy label, requests done, requests in all, simulated hours) -> None
ProgressFor = Callable[[str, int], Callable[[int, int, float], None] | None]


@dataclass(frozen=True)
class Run:
    label: str
    scenario: Scenario
    policy_index: int


def plan(scenarios: Sequence[Scenario]) -> list[Run]:
    """Every policy of every scenario, labelled ``policy`` (one scenario) or
    ``scenario:policy`` (several)."""
    runs = []
    for scenario in scenarios:
        for index, policy in enumerate(scenario.policy):
            label = policy.name if len(scenarios) == 1 else f"{scenario.name}:{policy.name}"
            runs.append(Run(label, scenario, index))
    return runs


def workdir_root() -> str | None:
    """Throw-away databases on tmpfs when there is one: the replay writes every claim."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() else None


def execute(
    scenarios: Sequence[Scenario],
    out: Path,
    progress_for: ProgressFor | None = None,
    connect: Connect | None = None,
) -> list[PolicyResult]:
    """Every run in turn; with ``connect``, each replayed there (``remote.connect``)."""
    results: list[PolicyResult] = []
    runs = plan(scenarios)
    workloads = {id(s): generate(s) for s in scenarios}
    with tempfile.TemporaryDirectory(prefix="allotment-sim-", dir=workdir_root()) as tmp:
        for number, run in enumerate(runs):
            scenario = run.scenario
            sim = Simulation(
                scenario,
                scenario.policy[run.policy_index],
                workloads[id(scenario)],
                workdir=Path(tmp) / str(number),
                progress=progress_for(run.label, len(workloads[id(scenario)]))
                if progress_for
                else None,
                connect=connect,
            )
            try:
                result = sim.run()
            finally:
                sim.close()
            result.policy = run.label
            results.append(result)
    write(scenarios, results, out)
    return results


def write(scenarios: Sequence[Scenario], results: Sequence[PolicyResult], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    first = scenarios[0]
    title = first.name if len(scenarios) == 1 else " vs ".join(s.name for s in scenarios)
    description = " ".join(s.description for s in scenarios if s.description)
    (out / "results.json").write_text(
        json.dumps([r.to_dict() for r in results], indent=1, sort_keys=True)
    )
    (out / "report.html").write_text(report.render(title, description, results, _size_order(first)))
