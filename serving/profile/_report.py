"""A profile's outputs: profile.json, profile.csv, profile.png (matplotlib, when installed),
the recommended config.pbtxt and the terminal table (rich)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

__all__ = ["print_table", "write_csv", "write_json", "write_png"]

_MIB = 2**20


def write_json(report: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(report, indent=2, allow_nan=False, default=_jsonable) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON")


def _row(point: dict[str, Any]) -> dict[str, Any]:
    cfg = point["configuration"] or {}
    load = point["load"]
    lat = point["latency_ms"]
    return {
        "instances": cfg.get("instances", ""),
        "max_batch_size": cfg.get("max_batch_size", ""),
        "queue_delay_us": cfg.get("queue_delay_us", ""),
        "mode": load["mode"],
        "load": load.get("concurrency", load.get("rate")),
        "throughput": round(point["throughput"], 2),
        "p50_ms": round(lat["p50"], 3),
        "p90_ms": round(lat["p90"], 3),
        "p99_ms": round(lat["p99"], 3),
        "p999_ms": round(lat["p99.9"], 3),
        "errors": point["errors"],
        "cpu_cores": "" if point["cpu_cores"] is None else round(point["cpu_cores"], 3),
        "peak_rss_mib": ""
        if point["peak_rss_bytes"] is None
        else round(point["peak_rss_bytes"] / _MIB, 1),
        "batch_sizes": " ".join(f"{k}:{v}" for k, v in point["batch_sizes"].items()),
        "server_queue_ms": _ms(point.get("server", {}).get("queue_ms")),
        "server_compute_infer_ms": _ms(point.get("server", {}).get("compute_infer_ms")),
    }


def _ms(value: float | None) -> float | str:
    return "" if value is None else round(value, 3)


def _load_value(point: dict[str, Any]) -> float:
    load = point["load"]
    return float(load.get("concurrency", load.get("rate", 0)))


def write_csv(points: list[dict[str, Any]], path: Path) -> Path:
    rows = [_row(p) for p in points]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(_row(points[0]).keys()) if points else [])
        writer.writeheader()
        writer.writerows(rows)
    return path


def print_table(report: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    recommended = (report.get("recommendation") or {}).get("point")
    table = Table(title=f"sluice profile: {report['model']}")
    columns = ["instances", "max_batch_size", "queue_delay_us", "mode", "load", "throughput",
               "p50_ms", "p99_ms", "p999_ms", "errors", "cpu_cores", "peak_rss_mib"]  # fmt: skip
    for name in columns:
        table.add_column(name, justify="right")
    for i, point in enumerate(report["points"]):
        row = _row(point)
        style = "bold green" if i == recommended else None
        table.add_row(*(str(row[c]) for c in columns), style=style)
    console.print(table)


def write_png(report: dict[str, Any], path: Path) -> Path | None:
    """p99 against throughput, one line per configuration joining its loads in order, the
    SLO drawn; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    groups: dict[str, list[dict[str, Any]]] = {}
    for point in report["points"]:
        cfg = point["configuration"]
        key = "as running" if cfg is None else (
            f"{cfg['instances']} inst, batch {cfg['max_batch_size']}, {cfg['queue_delay_us']} us"
        )  # fmt: skip
        groups.setdefault(key, []).append(point)
    for label, points in groups.items():
        points = sorted(points, key=lambda p: (p["load"]["mode"], _load_value(p)))
        ax.plot([p["throughput"] for p in points], [p["latency_ms"]["p99"] for p in points],
                marker="o", label=label)  # fmt: skip
    slo = report.get("slo_p99_ms")
    if slo is not None:
        ax.axhline(slo, color="red", linestyle="--", label=f"SLO p99 {slo:g} ms")
    recommended = (report.get("recommendation") or {}).get("point")
    if recommended is not None:
        best = report["points"][recommended]
        ax.scatter([best["throughput"]], [best["latency_ms"]["p99"]], s=160, facecolors="none",
                   edgecolors="black", label="recommended")  # fmt: skip
    ax.set_xlabel("throughput (inferences/s)")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_title(f"sluice profile: {report['model']}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
