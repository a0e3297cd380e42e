"""The results: a summary table for the terminal and one self-contained ``report.html``.

Plots are drawn with matplotlib's SVG backend (the object API, no pyplot state) and
inlined: the file needs no network, no JavaScript and no other file, opens in any browser
and can be attached to a change request. Text stays text (``svg.fonttype = none``), so the
plots are searchable and small. Every plot shows each policy of the run, side by side.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from allotment.sim.engine import PolicyResult

matplotlib.rcParams.update(
    {"svg.fonttype": "none", "svg.hashsalt": "allotment-sim", "font.size": 9}
)

PLOTS = [
    ("utilization", "Utilization per resource class"),
    ("fragmentation", "Stranded capacity"),
    ("rejections", "NoValidHost over time, by the stage that emptied the list"),
    ("throughput", "Placements per second (wall clock)"),
    ("zones", "Fill per availability zone"),
    ("instances", "Instances per host (at peak utilization)"),
    ("largest", "Largest flavor that still fits"),
]
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _grid(count: int, height: float = 2.6) -> tuple[Figure, list[Any]]:
    columns = min(count, 3)
    rows = (count + columns - 1) // columns
    fig = Figure(figsize=(4.2 * columns, height * rows))
    axes = [fig.add_subplot(rows, columns, i + 1) for i in range(count)]
    return fig, axes


def _legend(ax: Any, results: Sequence[PolicyResult]) -> None:
    if len(results) > 1:
        ax.legend(fontsize=7, loc="best")


def _lines(
    results: Sequence[PolicyResult], panels: list[tuple[str, Any]], ylabel: str, percent: bool
) -> str:
    fig, axes = _grid(len(panels))
    for ax, (title, pick) in zip(axes, panels, strict=True):
        for k, result in enumerate(results):
            values = pick(result)
            scale = 100.0 if percent else 1.0
            ax.plot(
                result.times,
                [v * scale for v in values],
                color=COLORS[k % len(COLORS)],
                label=result.policy,
                linewidth=1.4,
            )
        ax.set_title(title)
        ax.set_xlabel("simulated hours")
        ax.set_ylabel(ylabel)
        if percent:
            ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        _legend(ax, results)
    fig.tight_layout()
    return _svg(fig)


def plot_utilization(results: Sequence[PolicyResult]) -> str:
    rcs = results[0].rcs
    return _lines(results, [(rc, lambda r, rc=rc: r.utilization[rc]) for rc in rcs], "% used", True)


def plot_fragmentation(results: Sequence[PolicyResult]) -> str:
    return _lines(
        results,
        [
            ("free VCPU on hosts whose RAM is gone", lambda r: r.stranded_vcpu),
            ("free RAM on hosts whose VCPU is gone", lambda r: r.stranded_ram),
        ],
        "% of capacity",
        True,
    )


def plot_rejections(results: Sequence[PolicyResult]) -> str:
    fig, axes = _grid(len(results))
    for ax, result in zip(axes, results, strict=True):
        reasons = sorted(result.rejections)
        if reasons:
            ax.stackplot(
                result.times,
                [result.rejections[r] for r in reasons],
                labels=reasons,
                colors=COLORS[: len(reasons)] * (len(reasons) // len(COLORS) + 1),
            )
            ax.legend(fontsize=7, loc="upper left")
        else:
            ax.plot(result.times, [0] * len(result.times), color=COLORS[2], label="none")
            ax.text(0.5, 0.6, "no NoValidHost", transform=ax.transAxes, ha="center")
            ax.set_ylim(0, 1)
        ax.set_title(f"{result.policy}")
        ax.set_xlabel("simulated hours")
        ax.set_ylabel("instances rejected / interval")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _svg(fig)


def plot_throughput(results: Sequence[PolicyResult]) -> str:
    return _lines(
        results, [("select_destinations", lambda r: r.placements_per_s)], "placements/s", False
    )


def plot_zones(results: Sequence[PolicyResult]) -> str:
    zones = results[0].zones
    return _lines(
        results,
        [(f"{z} (max of VCPU, RAM)", lambda r, z=z: r.zone_fill[z]) for z in zones],
        "% used",
        True,
    )


def plot_instances(results: Sequence[PolicyResult]) -> str:
    fig, axes = _grid(1, 3.0)
    ax = axes[0]
    top = max((max(r.instances_per_host, default=0) for r in results), default=0)
    bins = list(range(top + 2))
    for k, result in enumerate(results):
        ax.hist(
            result.instances_per_host,
            bins=bins,
            histtype="step",
            linewidth=1.6,
            color=COLORS[k % len(COLORS)],
            label=result.policy,
        )
    ax.set_xlabel("instances on the host")
    ax.set_ylabel("hosts")
    ax.grid(alpha=0.3)
    _legend(ax, results)
    fig.tight_layout()
    return _svg(fig)


def plot_largest(results: Sequence[PolicyResult], order: list[int]) -> str:
    fig, axes = _grid(1, 3.0)
    ax = axes[0]
    rank = {flavor: position for position, flavor in enumerate(order)}
    names = results[0].flavors
    for k, result in enumerate(results):
        ax.step(
            result.times,
            [rank.get(f, -1) for f in result.largest_fit],
            where="post",
            color=COLORS[k % len(COLORS)],
            label=result.policy,
            linewidth=1.4,
        )
    ax.set_yticks(range(-1, len(order)), ["none", *[names[f] for f in order]])
    ax.set_xlabel("simulated hours")
    ax.grid(alpha=0.3)
    _legend(ax, results)
    fig.tight_layout()
    return _svg(fig)


SUMMARY_ROWS = [
    ("hosts", "hosts"),
    ("existing_instances", "instances at start"),
    ("requests", "requests (select_destinations calls)"),
    ("instances_requested", "instances requested"),
    ("instances_placed", "instances placed"),
    ("instances_rejected", "instances rejected (NoValidHost)"),
    ("moves", "resizes + migrations"),
    ("moves_failed", "moves rejected"),
    ("alive_at_end", "instances alive at the end"),
    ("mean_stranded_vcpu", "mean stranded VCPU (share)"),
    ("mean_stranded_ram", "mean stranded RAM (share)"),
    ("batches", "batches (calls decided together)"),
    ("replay_s", "replay wall time (s)"),
    ("replay_cpu_s", "replay CPU time (s)"),
    ("requests_per_s", "requests/s"),
]


def summary_rows(results: Sequence[PolicyResult]) -> list[tuple[str, list[str]]]:
    """(label, one value per policy) rows, for the terminal table and the report."""
    rows = [(label, [str(r.totals.get(key, "")) for r in results]) for key, label in SUMMARY_ROWS]
    for rc in results[0].rcs:
        rows.append(
            (f"peak {rc} utilization", [f"{r.totals['peak_utilization'][rc]:.1%}" for r in results])
        )
    reasons = sorted({k for r in results for k in r.totals["rejections_by_reason"]})
    for reason in reasons:
        rows.append(
            (
                f"rejected by {reason}",
                [str(r.totals["rejections_by_reason"].get(reason, 0)) for r in results],
            )
        )
    return rows


def render(
    title: str, description: str, results: Sequence[PolicyResult], flavor_order: list[int]
) -> str:
    """The whole report as one HTML document."""
    drawn = {
        "utilization": plot_utilization(results),
        "fragmentation": plot_fragmentation(results),
        "rejections": plot_rejections(results),
        "throughput": plot_throughput(results),
        "zones": plot_zones(results),
        "instances": plot_instances(results),
        "largest": plot_largest(results, flavor_order),
    }
    esc = html.escape
    head = "".join(f"<th>{esc(r.policy)}</th>" for r in results)
    body = "".join(
        f"<tr><td>{esc(label)}</td>{''.join(f'<td>{esc(v)}</td>' for v in values)}</tr>"
        for label, values in summary_rows(results)
    )
    settings = "".join(
        f"<tr><td>{esc(r.policy)}</td><td><code>{esc(_settings(r.settings))}</code></td></tr>"
        for r in results
    )
    sections = "".join(
        f'<section class="plot" id="plot-{key}" data-plot="{key}"><h2>{esc(text)}</h2>'
        f"{drawn[key]}</section>"
        for key, text in PLOTS
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{esc(title)} — allotment sim</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; background: #fff; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }}
td:first-child {{ text-align: left; }}
section.plot {{ margin: 1.5em 0; }}
section.plot svg {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>{esc(title)}</h1>
<p>{esc(description)}</p>
<h2>Summary</h2>
<table id="summary"><tr><th></th>{head}</tr>{body}</table>
<h2>Policies</h2>
<table id="policies">{settings}</table>
{sections}
</body></html>
"""


def _settings(settings: dict[str, Any]) -> str:
    parts = []
    for key, value in settings.items():
        if isinstance(value, dict):
            parts += [f"{key}.{k}={v}" for k, v in value.items()]
        elif value is not None:
            parts.append(f"{key}={value}")
    return ", ".join(parts) or "defaults"
