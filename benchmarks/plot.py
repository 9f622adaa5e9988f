"""Latency against throughput, one panel per load scenario (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.report import RunReport

__all__ = ["plot_latency_throughput"]

_COLORS = {"sluice": "tab:blue", "mlserver": "tab:orange", "ceiling": "tab:green"}


def plot_latency_throughput(report: RunReport, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(m.scenario for m in report.measurements))
    if not scenarios:
        return None
    cols = min(3, len(scenarios))
    rows = (len(scenarios) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4.2 * rows), squeeze=False)
    for ax, scenario in zip(axes.flat, scenarios, strict=False):
        ms = [m for m in report.measurements if m.scenario == scenario and m.requests > 0]
        for target in dict.fromkeys(m.target for m in ms):
            mine = [m for m in ms if m.target == target]
            sweep = sorted((m for m in mine if m.rate), key=lambda m: m.throughput)
            if sweep:
                ax.plot(
                    [m.throughput for m in sweep],
                    [m.latency.p99_ms for m in sweep],
                    marker="o",
                    color=_COLORS.get(target),
                    label=f"{target} p99 (open loop)",
                )
                ax.plot(
                    [m.throughput for m in sweep],
                    [m.latency.p50_ms for m in sweep],
                    marker=".",
                    linestyle="--",
                    color=_COLORS.get(target),
                    label=f"{target} p50",
                )
            points = [m for m in mine if not m.rate]
            if points:
                ax.scatter(
                    [m.throughput for m in points],
                    [m.latency.p99_ms for m in points],
                    color=_COLORS.get(target),
                    marker="x" if target != "sluice" else "o",
                    label=f"{target} p99 (configs, clients)",
                )
        if report.limits and ms:
            limit = report.limits.get(_model_of(scenario))
            if limit and scenario.startswith("wide"):
                ax.axvline(limit.best, color="grey", linestyle=":", label="in-process ORT limit")
        ax.set_title(scenario, fontsize=10)
        ax.set_xlabel("throughput (inferences/s)")
        ax.set_ylabel("latency (ms)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(scenarios) :]:
        ax.axis("off")
    fig.suptitle(f"Sluice benchmarks, {report.started}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _model_of(scenario: str) -> str:
    from benchmarks.scenarios import SCENARIOS

    return SCENARIOS[scenario].model if scenario in SCENARIOS else ""
