"""The drift report as one self-contained HTML page: per feature the baseline and
current distributions side by side (inline SVG) and the scores, drifted features first."""

from __future__ import annotations

import html
import itertools
from typing import Any

import numpy as np

from serving.monitoring._drift import profile_features

__all__ = ["render_html"]

_W, _H = 260, 90


def _bars(proportions: list[float], labels: list[str], colour: str) -> str:
    n = max(len(proportions), 1)
    top = max(max(proportions, default=0.0), 1e-9)
    width = _W / n
    rects = []
    for i, (p, label) in enumerate(zip(proportions, labels, strict=True)):
        h = _H * p / top
        rects.append(
            f'<rect x="{i * width:.1f}" y="{_H - h:.1f}" width="{max(width - 1, 1):.1f}" '
            f'height="{h:.1f}" fill="{colour}"><title>{html.escape(label)}: {p:.3f}'
            "</title></rect>"
        )
    return f'<svg width="{_W}" height="{_H}" role="img">{"".join(rects)}</svg>'


def _histograms(base: Any, current: np.ndarray) -> tuple[str, str]:
    profile = base if isinstance(base, dict) else profile_features({"f": base})["features"]["f"]
    if profile["kind"] == "categorical":
        labels = list(profile["categories"])
        base_counts = np.asarray(profile["counts"], float)
        cur_vals = np.asarray([str(v) for v in current])
        cur_counts = np.array([np.sum(cur_vals == c) for c in labels], float)
    else:
        edges = np.asarray(profile["edges"], float)
        labels = [f"{a:.3g}..{b:.3g}" for a, b in itertools.pairwise(edges)]
        base_counts = np.asarray(profile["counts"], float)
        idx = np.searchsorted(edges[1:-1], current.astype(float), side="right")
        cur_counts = np.bincount(idx, minlength=len(base_counts)).astype(float)
    b = (base_counts / max(base_counts.sum(), 1)).tolist()
    c = (cur_counts / max(cur_counts.sum(), 1)).tolist()
    return _bars(b, labels, "#4a78b5"), _bars(c, labels, "#d9822b")


def render_html(report: dict[str, Any], baseline: dict[str, Any], current: dict[str, Any]) -> str:
    base_features = baseline.get("features") if "sluice_profile" in baseline else baseline
    assert base_features is not None
    by_feature: dict[str, list[dict[str, Any]]] = {}
    for score in report["features"]:
        by_feature.setdefault(score["name"], []).append(score)
    sections = []
    for name, scores in by_feature.items():
        drifted = any(s["drifted"] for s in scores)
        base_svg, cur_svg = _histograms(base_features[name], np.asarray(current[name]))
        rows = "".join(
            f"<tr><td>{s['method']}</td><td>{_num(s['statistic'])}</td>"
            f"<td>{_num(s['p_value'])}</td><td>{_num(s['threshold'])}</td>"
            f"<td>{'too small' if s['too_small'] else ('DRIFT' if s['drifted'] else 'ok')}</td>"
            f"<td>{s['n_baseline']}</td><td>{s['n_current']}</td></tr>"
            for s in scores
        )
        sections.append(
            f'<section class="{"drift" if drifted else "ok"}"><h2>{html.escape(name)}'
            f"{' — drifted' if drifted else ''}</h2>"
            f'<div class="pair"><figure>{base_svg}<figcaption>baseline</figcaption></figure>'
            f"<figure>{cur_svg}<figcaption>current</figcaption></figure></div>"
            "<table><tr><th>method</th><th>statistic</th><th>p-value</th><th>threshold</th>"
            f"<th>verdict</th><th>n baseline</th><th>n current</th></tr>{rows}</table></section>"
        )
    drifted_names = ", ".join(report["drifted_features"]) or "none"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Sluice drift report</title>"
        "<style>body{font-family:sans-serif;margin:2em}.pair{display:flex;gap:2em}"
        "section{border-top:1px solid #ccc;padding:.5em 0}.drift h2{color:#b00}"
        "td,th{padding:2px 8px;text-align:right}</style></head><body>"
        f"<h1>Drift report</h1><p>{report['n_features']} features; alpha {report['alpha']} "
        f"with {report['correction']} correction; drifted: {html.escape(drifted_names)}</p>"
        + "".join(sections)
        + "</body></html>"
    )


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"
