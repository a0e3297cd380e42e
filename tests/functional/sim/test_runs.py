"""Whole runs: the same seed gives the same result, policies compare side by side in one
report, and the CLI writes report.html and results.json or refuses a bad scenario."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from allotment.cli import main
from allotment.sim import runner
from allotment.sim.report import PLOTS
from allotment.sim.scenario import Policy, Scenario, parse_scenario
from tests.functional.sim.conftest import scenario_data, toml_text

# Wall-clock measurements differ between runs; everything else must not.
WALL = {"build_s", "replay_s", "replay_cpu_s", "requests_per_s", "placements_per_s"}


def deterministic(result: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in result.items() if k != "placements_per_s"}
    out["totals"] = {k: v for k, v in result["totals"].items() if k not in WALL}
    return out


def run(scenario: Scenario, out: Path) -> list[dict[str, Any]]:
    runner.execute([scenario], out)
    results: list[dict[str, Any]] = json.loads((out / "results.json").read_text())
    return results


def test_same_seed_same_result_other_seed_other_result(tmp_path: Path) -> None:
    scenario = parse_scenario(scenario_data(requests=60))
    first = run(scenario, tmp_path / "a")
    again = run(scenario, tmp_path / "b")
    assert [deterministic(r) for r in first] == [deterministic(r) for r in again]
    other = scenario.model_copy(
        update={"workload": scenario.workload.model_copy(update={"seed": 12})}
    )
    different = run(other, tmp_path / "c")
    assert deterministic(different[0]) != deterministic(first[0])


def test_pack_and_spread_side_by_side(tmp_path: Path) -> None:
    """On identical hosts, packing leaves hosts empty that spreading uses."""
    data = scenario_data(requests=50, existing_load=0.0, resize_fraction=0, migrate_fraction=0)
    data["workload"]["groups"] = {"fraction": 0.0}
    data["workload"]["az_hints"] = {}
    data["hosts"] = [{**data["hosts"][0], "count": 10}]
    data["flavor"] = data["flavor"][:2]
    scenario = parse_scenario(data).with_policies(
        [
            Policy(name="spread"),
            Policy(
                name="pack",
                filter_scheduler={
                    "ram_weight_multiplier": -1.0,
                    "cpu_weight_multiplier": -1.0,
                    "disk_weight_multiplier": -1.0,
                },
            ),
        ]
    )
    results = runner.execute([scenario], tmp_path)
    spread, pack = results
    assert spread.totals["requests"] == pack.totals["requests"] == 50
    empty = {r.policy: sum(1 for n in r.instances_per_host if n == 0) for r in results}
    assert empty["pack"] > empty["spread"], empty
    page = (tmp_path / "report.html").read_text()
    for key, _ in PLOTS:
        assert f'id="plot-{key}"' in page
    # Both policies in the summary table and in the plot legends.
    assert "<th>spread</th><th>pack</th>" in page
    assert page.count(">pack<") >= 3


def test_compare_two_scenario_files(tmp_path: Path) -> None:
    for name, multiplier in (("a", 1.0), ("b", -1.0)):
        data = scenario_data(requests=30)
        data["name"] = name
        text = toml_text(data) + (
            f'\n[[policy]]\nname = "ram"\nfilter_scheduler = {{ ram_weight_multiplier = '
            f"{multiplier} }}\n"
        )
        (tmp_path / f"{name}.toml").write_text(text)
    out = tmp_path / "out"
    code = main(
        [
            "sim",
            "compare",
            str(tmp_path / "a.toml"),
            str(tmp_path / "b.toml"),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["policy"] for r in results] == ["a:ram", "b:ram"]
    assert "a vs b" in (out / "report.html").read_text()


def test_cli_rejects_a_bad_scenario_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = scenario_data()
    data["hosts"][0]["aggregates"] = ["nope"]
    data["workload"]["lifetime"]["distribution"] = "weibull"
    path = tmp_path / "bad.toml"
    path.write_text(toml_text(data))
    out = tmp_path / "out"
    assert main(["sim", "run", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "workload.lifetime.distribution" in err
    assert not out.exists()


def test_cli_run_writes_the_report_and_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.toml"
    path.write_text(toml_text(scenario_data(requests=20)))
    out = tmp_path / "out"
    assert main(["sim", "run", str(path), "--out", str(out), "--quiet", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"instances placed\s*│\s*\d+", printed), printed
    page = (out / "report.html").read_text()
    assert page.count("<svg") == len(PLOTS)
    # Self-contained: nothing to fetch.
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert json.loads((out / "results.json").read_text())[0]["totals"]["requests"] == 20
