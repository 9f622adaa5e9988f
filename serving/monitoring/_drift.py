"""Drift between a baseline (training data or its profile) and collected data.

Numeric features: the two-sample Kolmogorov-Smirnov test and the population
stability index (PSI) over the baseline's decile bins. Categorical features (strings,
booleans, integers with at most ``CATEGORICAL_MAX`` distinct values): chi-square on
the category counts and the Jensen-Shannon distance. Against a profile (histograms,
no samples) the KS test is replaced by chi-square goodness of fit on the profile's bins.

Thresholds: p-values are compared with ``alpha / m`` (Bonferroni over the ``m``
features tested), so testing more features does not raise the false-alarm rate; the
PSI threshold is at least 0.1 and grows with sampling noise, ``chi2(1 - alpha/m,
bins - 1) * (1/n_baseline + 1/n_current)``, PSI's approximate null distribution; the JS
distance threshold is 0.1. Fewer than ``MIN_SAMPLES`` on either side is reported as
too small to judge, never as drift.

A feature drifts when both of its methods say so: the test finds the difference
significant (KS or chi-square) and the distance (PSI or JS) finds it large enough to
matter. Significance alone flags negligible shifts once samples are large, and about
``alpha`` of undrifted feature sets by chance; the distance alone is noisy on small
samples.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serving.monitoring._features import DriftInputError

__all__ = [
    "CATEGORICAL_MAX",
    "MIN_SAMPLES",
    "FeatureScore",
    "compare",
    "profile_features",
]

CATEGORICAL_MAX = 20
MIN_SAMPLES = 30
BINS = 10
PSI_MIN = 0.1
JS_MIN = 0.1
_EPS = 1e-4
_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


@dataclass(frozen=True, slots=True)
class FeatureScore:
    name: str
    method: str  # "ks" | "psi" | "chi2" | "js"
    statistic: float | None
    p_value: float | None
    threshold: float
    drifted: bool
    n_baseline: int
    n_current: int
    too_small: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _is_categorical(*arrays: np.ndarray) -> bool:
    if any(a.dtype.kind in "OUSb" for a in arrays):
        return True
    if all(a.dtype.kind in "iu" for a in arrays):
        return len(np.unique(np.concatenate(arrays))) <= CATEGORICAL_MAX
    return False


def _clean(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind == "f":
        return values[np.isfinite(values)]
    if values.dtype.kind in "OUS":
        return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], object)
    return values


def profile_features(features: dict[str, np.ndarray]) -> dict[str, Any]:
    """A baseline profile: per feature its histogram (and quantiles, when numeric)."""
    out: dict[str, Any] = {}
    for name, raw in features.items():
        values = _clean(raw)
        if _is_categorical(values):
            cats, counts = np.unique(values.astype(str), return_counts=True)
            out[name] = {
                "kind": "categorical", "n": int(values.size),
                "categories": cats.tolist(), "counts": counts.tolist(),
            }  # fmt: skip
        else:
            values = values.astype(np.float64)
            if values.size == 0:
                raise DriftInputError(f"feature {name!r} has no finite values")
            edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)))
            counts = _bin_counts(values, edges)
            out[name] = {
                "kind": "numeric", "n": int(values.size),
                "edges": edges.tolist(), "counts": counts.tolist(),
                "quantiles": {str(q): float(np.quantile(values, q)) for q in _QUANTILES},
            }  # fmt: skip
    return {"sluice_profile": 1, "features": out}


def _bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts over the baseline's bins, the outer bins open-ended."""
    inner = edges[1:-1]
    idx = np.searchsorted(inner, values, side="right")
    return np.bincount(idx, minlength=max(len(edges) - 1, 1))


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.maximum(expected / max(expected.sum(), 1), _EPS)
    a = np.maximum(actual / max(actual.sum(), 1), _EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def _psi_threshold(bins: int, n_b: int, n_c: int, level: float) -> float:
    from scipy import stats

    noise = float(stats.chi2.ppf(1 - level, max(bins - 1, 1))) * (1 / n_b + 1 / n_c)
    return max(PSI_MIN, noise)


def _small(name: str, methods: tuple[str, str], n_b: int, n_c: int, level: float) -> list[Any]:
    return [
        FeatureScore(name, m, None, None, level if m in ("ks", "chi2") else PSI_MIN,
                     False, n_b, n_c, too_small=True)
        for m in methods
    ]  # fmt: skip


def _numeric(name: str, base: Any, current: np.ndarray, level: float) -> list[FeatureScore]:
    from scipy import stats

    current = current.astype(np.float64)
    n_c = int(current.size)
    if isinstance(base, dict):  # a profile
        edges = np.asarray(base["edges"], dtype=np.float64)
        expected = np.asarray(base["counts"], dtype=np.float64)
        n_b = int(base["n"])
        if n_b < MIN_SAMPLES or n_c < MIN_SAMPLES:
            return _small(name, ("chi2", "psi"), n_b, n_c, level)
        actual = _bin_counts(current, edges).astype(np.float64)
        exp = np.maximum(expected / expected.sum(), _EPS) * n_c
        exp *= n_c / exp.sum()
        chi = stats.chisquare(actual, exp)
        first = FeatureScore(
            name, "chi2", float(chi.statistic), float(chi.pvalue), level,
            bool(chi.pvalue < level), n_b, n_c,
        )  # fmt: skip
    else:
        base = base.astype(np.float64)
        n_b = int(base.size)
        if n_b < MIN_SAMPLES or n_c < MIN_SAMPLES:
            return _small(name, ("ks", "psi"), n_b, n_c, level)
        edges = np.unique(np.quantile(base, np.linspace(0, 1, BINS + 1)))
        expected = _bin_counts(base, edges).astype(np.float64)
        actual = _bin_counts(current, edges).astype(np.float64)
        ks = stats.ks_2samp(base, current)
        first = FeatureScore(
            name, "ks", float(ks.statistic), float(ks.pvalue), level,
            bool(ks.pvalue < level), n_b, n_c,
        )  # fmt: skip
    psi = _psi(expected, actual)
    threshold = _psi_threshold(len(expected), n_b, n_c, level)
    return [first, FeatureScore(name, "psi", psi, None, threshold, psi > threshold, n_b, n_c)]


def _categorical(name: str, base: Any, current: np.ndarray, level: float) -> list[FeatureScore]:
    from scipy import stats
    from scipy.spatial.distance import jensenshannon

    current = current.astype(str)
    if isinstance(base, dict):
        if base.get("kind") != "categorical":
            raise DriftInputError(f"feature {name!r} is numeric in the profile, not categorical")
        base_counts = dict(zip(base["categories"], base["counts"], strict=True))
    else:
        cats, counts = np.unique(base.astype(str), return_counts=True)
        base_counts = dict(zip(cats.tolist(), counts.tolist(), strict=True))
    cur_cats, cur_counts = np.unique(current, return_counts=True)
    cur = dict(zip(cur_cats.tolist(), cur_counts.tolist(), strict=True))
    n_b, n_c = int(sum(base_counts.values())), int(current.size)
    if n_b < MIN_SAMPLES or n_c < MIN_SAMPLES:
        return _small(name, ("chi2", "js"), n_b, n_c, level)
    cats_all = sorted(set(base_counts) | set(cur))
    table = np.array(
        [[base_counts.get(c, 0) for c in cats_all], [cur.get(c, 0) for c in cats_all]], float
    )
    if len(cats_all) < 2:
        stat, p = 0.0, 1.0
    else:
        res = stats.chi2_contingency(table + 0.5)  # +0.5: no empty cell divides by zero
        stat, p = float(res.statistic), float(res.pvalue)
    js = float(jensenshannon(table[0] / n_b, table[1] / n_c, base=2))
    return [
        FeatureScore(name, "chi2", stat, p, level, p < level, n_b, n_c),
        FeatureScore(name, "js", js, None, JS_MIN, js > JS_MIN, n_b, n_c),
    ]


def compare(
    baseline: dict[str, Any], current: dict[str, np.ndarray], *, alpha: float = 0.05
) -> dict[str, Any]:
    """The drift report: ``baseline`` maps features to samples, or is a profile."""
    profile = baseline.get("features") if "sluice_profile" in baseline else None
    base_features: dict[str, Any] = profile if profile is not None else baseline
    missing = sorted(set(current) - set(base_features))
    if missing:
        raise DriftInputError(
            "the baseline lacks feature(s) the collected data has: " + ", ".join(missing)
            + "; baseline features: " + ", ".join(sorted(base_features))
        )  # fmt: skip
    if not current:
        raise DriftInputError("the collected data holds no input features to compare")
    level = alpha / len(current)
    scores: list[FeatureScore] = []
    for name in sorted(current):
        cur = _clean(current[name])
        base = base_features[name]
        if isinstance(base, dict):
            categorical = base.get("kind") == "categorical"
        else:
            base = _clean(base)
            categorical = _is_categorical(base, cur)
        if categorical:
            scores += _categorical(name, base, cur, level)
        else:
            scores += _numeric(name, base, cur, level)
    by_name: dict[str, list[FeatureScore]] = {}
    for score in scores:
        by_name.setdefault(score.name, []).append(score)
    drifted = sorted(n for n, pair in by_name.items() if all(s.drifted for s in pair))
    small = sorted({s.name for s in scores if s.too_small})
    order = {name: (name not in drifted, name) for name in current}
    scores.sort(key=lambda s: order[s.name])
    return {
        "features": [s.to_json() for s in scores],
        "drifted_features": drifted,
        "too_small": small,
        "n_features": len(current),
        "alpha": alpha,
        "correction": "bonferroni",
        "drift": bool(drifted),
    }


def load_baseline(path: Path) -> dict[str, Any]:
    """Samples from a training file, or a profile written by ``sluice drift profile``."""
    from serving.monitoring._features import load_baseline_samples

    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DriftInputError(f"baseline profile {str(path)!r}: {exc}") from None
        if not isinstance(data, dict) or data.get("sluice_profile") != 1:
            raise DriftInputError(
                f"{str(path)!r} is not a baseline profile (written by sluice drift profile)"
            )
        return data
    return load_baseline_samples(path)


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
