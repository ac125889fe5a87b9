"""From a grid's cell results to a summary: per task and variant the IQM and median with
stratified-bootstrap 95 % intervals over seeds, the seeds at the task's bar, steps/s, learning
curves with bands, and the same aggregated over tasks on normalised scores.

``summary.json`` is the results file the README tables render from (:mod:`tether.bench.tables`);
it carries the provenance of its cells, including the tether source hash they ran on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tether.bench import provenance, stats
from tether.bench.runner import GRID_INFO, REPORTED_METRICS, RESULT, metric_means, run_records

__all__ = ["GRID_INFO", "SUMMARY", "load_results", "render_table", "summarise", "write_report"]

SUMMARY = "summary.json"
CURVE_POINTS = 50
PROFILE_POINTS = 101


def load_results(out: str | Path) -> list[dict[str, Any]]:
    """Every finished cell's record under a grid's output folder.

    Raises:
        FileNotFoundError: when the folder holds no finished cell.
    """
    folder = Path(out)
    records = []
    for path in sorted(folder.glob(f"*/{RESULT}")):
        record = json.loads(path.read_text(encoding="utf-8"))
        if "metric_means" not in record:  # a cell recorded before records kept them: its run's file
            record["metric_means"] = metric_means(run_records(path.parent / "run"))
        records.append(record)
    if not records:
        raise FileNotFoundError(f"no finished cells (*/{RESULT}) under {folder}; run tether bench run first")
    return records


def _metrics(records: list[dict[str, Any]], n_resamples: int) -> dict[str, Any]:
    """IQM over seeds (with its interval) of each reported metric every run of the row logged."""
    out = {}
    for key in REPORTED_METRICS:
        values = [r.get("metric_means", {}).get(key) for r in records]
        if values and all(v is not None for v in values):
            out[key] = stats.estimate([values], stats.iqm, n_resamples=n_resamples).to_dict()
    return out


def _order(records: list[dict[str, Any]], info: dict[str, Any], key: str) -> list[str]:
    seen = [r["cell"][key] for r in records]
    listed = [name for name in info.get(key + "s", []) if name in seen]
    return listed + sorted(set(seen) - set(listed))


def _curve(records: list[dict[str, Any]], n_resamples: int) -> dict[str, Any] | None:
    """IQM of the training return over seeds on a common step grid, with bootstrap bands."""
    curves = []
    for r in records:
        points = [(p["step"], p["ep_return"]) for p in r["curve"] if p.get("ep_return") is not None]
        if len(points) >= 2:
            curves.append(np.asarray(points, dtype=float))
    if not curves:
        return None
    first, last = max(c[0, 0] for c in curves), min(c[-1, 0] for c in curves)
    steps = np.linspace(first, last, CURVE_POINTS) if last > first else np.asarray([last])
    values = np.stack([np.interp(steps, c[:, 0], c[:, 1]) for c in curves], axis=-1)  # [P, seeds]
    point, low, high = stats.estimate_along([values], n_resamples=n_resamples)
    return {"steps": steps.tolist(), "iqm": point.tolist(),
            "low": [None if np.isnan(v) else v for v in low.tolist()],
            "high": [None if np.isnan(v) else v for v in high.tolist()], "seeds": len(curves)}


def _row(task: str, variant: str, records: list[dict[str, Any]], info: dict[str, Any],
         n_resamples: int) -> dict[str, Any]:
    records = sorted(records, key=lambda r: r["cell"]["seed"])
    scores = [r["score"] for r in records]
    # the grid's current bar, range and labels win over those stored when the cells ran
    meta = {**records[0]["task"], **info.get("task_info", {}).get(task, {})}
    label = {**records[0]["variant"], **info.get("variant_info", {}).get(variant, {})}.get("label", "")
    bar = meta["bar"]
    hits, n = stats.at_bar(scores, bar)
    rates = [r["steps_per_second"] for r in records if r.get("steps_per_second")]
    return {
        "task": task, "variant": variant, "baseline": records[0]["cell"].get("baseline"),
        "label": label, "task_label": meta.get("label", ""),
        "seeds": [r["cell"]["seed"] for r in records], "scores": scores, "bar": bar,
        "score_range": meta.get("score_range"), "at_bar": hits, "runs": n,
        "iqm": stats.estimate([scores], stats.iqm, n_resamples=n_resamples).to_dict(),
        "median": stats.estimate([scores], stats.median, n_resamples=n_resamples).to_dict(),
        "steps_per_second": float(np.median(rates)) if rates else None, "rates": rates,
        "steps": records[0].get("steps"), "curve": _curve(records, n_resamples),
        "metrics": _metrics(records, n_resamples),
    }


def _aggregate(rows: list[dict[str, Any]], variants: list[str], n_resamples: int) -> list[dict[str, Any]]:
    """Per variant over tasks, on scores normalised by each task's score_range, resampled per task."""
    found = []
    for variant in variants:
        mine = [r for r in rows if r["variant"] == variant]
        if len(mine) < 2 or any(r["score_range"] is None for r in mine):
            continue
        strata = [(np.asarray(r["scores"]) - r["score_range"][0])
                  / (r["score_range"][1] - r["score_range"][0]) for r in mine]
        taus = np.linspace(0.0, 1.0, PROFILE_POINTS)
        fraction, low, high = stats.performance_profile(strata, taus, n_resamples=n_resamples)
        found.append({
            "variant": variant, "tasks": [r["task"] for r in mine], "runs": sum(len(s) for s in strata),
            "at_bar": sum(r["at_bar"] for r in mine),
            "iqm": stats.estimate(strata, stats.iqm, n_resamples=n_resamples).to_dict(),
            "median": stats.estimate(strata, stats.median, n_resamples=n_resamples).to_dict(),
            "profile": {"tau": taus.tolist(), "fraction": fraction.tolist(), "low": low.tolist(),
                        "high": high.tolist()},
        })
    return found


def _speed(rows: list[dict[str, Any]], n_resamples: int) -> list[dict[str, Any]]:
    """Per task, each variant's steps/s over the first variant's: a ratio of medians with its CI.

    Runs pair up by seed when both variants ran the same seeds (a grid alternates them).
    """
    found = []
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task and len(r["rates"]) == r["runs"]]
        for other in mine[1:]:
            ref = mine[0]
            paired = ref["seeds"] == other["seeds"]
            found.append({"task": task, "variant": other["variant"], "reference": ref["variant"],
                          "paired": paired, "ratio": stats.ratio(other["rates"], ref["rates"], paired=paired,
                                                                 n_resamples=n_resamples).to_dict()})
    return found


def _provenance(records: list[dict[str, Any]]) -> dict[str, Any]:
    hashes = sorted({r["provenance"]["source_hash"] for r in records})
    commits = sorted({str(r["provenance"]["git"]["commit"]) for r in records})
    return {
        # one hash or none: a summary mixing cells from different sources cannot pass as either
        "source_hash": hashes[0] if len(hashes) == 1 else None, "source_hashes": hashes,
        "commits": commits, "dirty": any(bool(r["provenance"]["git"]["dirty"]) for r in records),
        "versions": records[0]["provenance"]["versions"], "hardware": records[0]["provenance"]["hardware"],
        "jobs": records[0]["provenance"].get("jobs"),
    }


def summarise(records: Sequence[dict[str, Any]], *, info: dict[str, Any] | None = None,
              n_resamples: int = stats.N_RESAMPLES) -> dict[str, Any]:
    """The summary of a grid's cell records (what ``summary.json`` holds).

    Args:
        records: the cells' ``result.json`` records.
        info: the grid's ``grid.json`` (name, task and variant order), when there is one.
        n_resamples: bootstrap resamples per interval.
    """
    found, meta = list(records), info or {}
    tasks, variants = _order(found, meta, "task"), _order(found, meta, "variant")
    rows = []
    for task in tasks:
        for variant in variants:
            mine = [r for r in found if r["cell"]["task"] == task and r["cell"]["variant"] == variant]
            if mine:
                rows.append(_row(task, variant, mine, meta, n_resamples))
    return {"kind": "tether-bench-summary", "grid": meta.get("name", ""), "tasks": tasks,
            "variants": variants, "confidence": stats.CONFIDENCE, "n_resamples": n_resamples,
            "rows": rows, "aggregate": _aggregate(rows, variants, n_resamples),
            "speed": _speed(rows, n_resamples),
            "provenance": _provenance(found)}


def _ci(e: dict[str, float | None], digits: int) -> str:
    point = f"{e['point']:.{digits}f}"
    if e["low"] is None or e["high"] is None:
        return point
    return f"{point} [{e['low']:.{digits}f}, {e['high']:.{digits}f}]"


def _digits(rows: list[dict[str, Any]]) -> int:
    spread = max((abs(s) for r in rows for s in r["scores"]), default=1.0)
    return 1 if spread >= 10 else 2


def render_table(summary: dict[str, Any]) -> str:
    """The summary as a markdown table and its notes (what the README's learning block shows above
    the line naming the commit it was measured on)."""
    lines = ["| task | variant | seeds | IQM [95 % CI] | median [95 % CI] | bar | seeds at bar |"
             " median steps/s | eval per seed |", "|---|---|---:|---|---|---:|---:|---:|---|"]
    for r in summary["rows"]:
        digits = _digits([r])
        name = r["label"] or r["variant"]
        rate = f"{r['steps_per_second']:.0f}" if r["steps_per_second"] else "—"
        lines.append(f"| {r['task_label'] or r['task']} | {name} | {r['runs']} | {_ci(r['iqm'], digits)} |"
                     f" {_ci(r['median'], digits)} | ≥ {r['bar']:g} | {r['at_bar']}/{r['runs']} | {rate} |"
                     f" {', '.join(f'{s:.{digits}f}' for s in r['scores'])} |")
    for a in summary["aggregate"]:
        lines.append(f"| all tasks (normalised) | {a['variant']} | {a['runs']} | {_ci(a['iqm'], 2)} |"
                     f" {_ci(a['median'], 2)} | | {a['at_bar']}/{a['runs']} | | |")
    for s in summary.get("speed", []):
        how = ("too few seeds for an interval" if s["ratio"]["low"] is None
               else f"{summary['confidence']:.0%} CI" + (", paired by seed" if s["paired"] else ""))
        lines.append(f"\nsteps/s of {s['variant']} / {s['reference']} on {s['task']}: {_ci(s['ratio'], 2)}"
                     f" (ratio of medians; {how})")
    lines += _metrics_table(summary["rows"])
    lines += ["", f"IQM and median over seeds of the deterministic evaluation's mean return;"
              f" {summary['confidence']:.0%} stratified-bootstrap intervals"
              f" ({summary['n_resamples']} resamples)."]
    return "\n".join(lines)


def _metrics_table(rows: list[dict[str, Any]]) -> list[str]:
    """Lines of a table of the reported metrics per task and variant (none when no run logged any)."""
    keys = [k for k in REPORTED_METRICS if any(k in r.get("metrics", {}) for r in rows)]
    if not keys:
        return []
    lines = ["", "| task | variant | " + " | ".join(f"`{k}`" for k in keys) + " |",
             "|---|---|" + "---:|" * len(keys)]
    for r in rows:
        cells = [_sig(r["metrics"][k]) if k in r.get("metrics", {}) else "—" for k in keys]
        name = r["label"] or r["variant"]
        lines.append(f"| {r['task_label'] or r['task']} | {name} | {' | '.join(cells)} |")
    lines.append("\nEach metric: the IQM over seeds of the run's mean over its updates [95 % CI].")
    return lines


def _sig(e: dict[str, float | None]) -> str:
    """A metric's IQM and interval to 3 significant digits."""
    def g(v: float | None) -> str:
        return "—" if v is None else f"{v:.3g}"
    return g(e["point"]) if e["low"] is None else f"{g(e['point'])} [{g(e['low'])}, {g(e['high'])}]"


def write_report(out: str | Path, *, plots: bool = True, n_resamples: int = stats.N_RESAMPLES) -> list[Path]:
    """Summarise the grid under ``out``: ``summary.json``, ``summary.md`` and (``plots``) the PNGs.

    Returns:
        The paths written.

    Raises:
        FileNotFoundError: when no cell has finished.
        MissingExtraError: when scipy (or, for plots, matplotlib) is not installed.
    """
    folder = Path(out)
    info_path = folder / GRID_INFO
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else None
    summary = summarise(load_results(folder), info=info, n_resamples=n_resamples)
    written = [folder / SUMMARY, folder / "summary.md"]
    written[0].write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    written[1].write_text(f"{render_table(summary)}\n\n{provenance.measured_on(summary['provenance'])}\n",
                          encoding="utf-8")
    if plots:
        from tether.bench.plots import plot_curves, plot_profile  # noqa: PLC0415 (matplotlib is optional)

        written += [plot_curves(summary, folder / "curves.png"),
                    plot_profile(summary, folder / "profile.png")]
    return written
