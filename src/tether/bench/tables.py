"""README and docs tables written from results files, never by hand.

A table lives between two marker comments that name how to render it and from which results file
(a path relative to the repository root)::

    <!-- tether-bench:learning:begin benchmarks/results/bench/learning/summary.json -->
    | task | variant | ... |
    <!-- tether-bench:learning:end -->

:func:`regenerate` rewrites every block from its file, ending with the line that says which commit,
versions and CPU it was measured on; :func:`check` reports each block whose text differs from the
render of its file. Whether a file was measured on the checkout's sources is a separate question,
answered by :mod:`tether.bench.staleness` (``tether bench check``): an edit under ``src/`` makes
tables stale, never wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from tether.bench import provenance
from tether.bench.report import render_table
from tether.errors import TetherError

__all__ = ["RENDERERS", "Block", "ResultsFileError", "check", "default_files", "find_blocks", "read_results",
           "regenerate", "regenerate_command", "render_block"]

_BLOCK = re.compile(
    r"<!-- tether-bench:(?P<kind>[a-z0-9-]+):begin (?P<source>\S+) -->\n(?P<body>.*?)"
    r"<!-- tether-bench:(?P=kind):end -->", re.DOTALL)
_MARKER = re.compile(r"<!-- tether-bench:(?P<kind>[a-z0-9-]+):(?P<edge>begin|end)\b")


def _ratio_cell(value: float, base: float, unit: str, scale: float) -> str:
    return f"{value * scale:.1f} {unit} ({value / base:.3f})"


def _step_overhead(data: dict[str, Any]) -> str:
    fwd, step = data["forward_seconds"], data["step_seconds"]
    # The checks' cost is measured against a raw step on the kernel the tracked step runs.
    base = "raw_cell" if "raw_cell" in fwd else "raw"
    shown = {"raw": "raw `nn.LSTM`", "raw_cell": "raw `torch.lstm_cell`"}
    lines = ["| variant | forward, wall clock | whole loop step, wall clock |", "|---|---:|---:|"]
    for name in fwd:
        lines.append(f"| {shown.get(name, name)} | {_ratio_cell(fwd[name], fwd[base], 'µs', 1e6)} |"
                     f" {_ratio_cell(step[name], step[base], 'µs', 1e6)} |")
    a = data["args"]
    return "\n".join([*lines, "", f"Ratios to the {shown[base]} step; medians of {a['rounds']}"
                      f" interleaved rounds of {a['inner']} steps."])


def _sequence(data: dict[str, Any]) -> str:
    lines = ["| T, B, in, H | fused no-reset call | `unroll` | per-step masked loop | loop / `unroll` |",
             "|---|---|---|---|---|"]
    for row in data["shapes"]:
        wall = row["wall_seconds"]
        cells = [f"{wall[n] * 1e3:.2f} ms ({wall[n] / wall['fused']:.2f}×)" for n in ("fused", "unroll",
                                                                                    "reference")]
        lines.append(f"| {', '.join(map(str, row['shape']))} | " + " | ".join(cells)
                     + f" | {wall['reference'] / wall['unroll']:.1f}× |")
    return "\n".join([*lines, "", f"Forward + backward, {data['start_rate']:.0%} random episode starts,"
                      f" medians of {data['rounds']} interleaved rounds."])


def _sequence_explore(data: dict[str, Any]) -> str:
    """Every strategy timed by ``sequence_table.py --explore``, as a ratio to the fused call."""
    names = [n for n in data["shapes"][0]["wall_seconds"] if n != "fused"]
    lines = ["| T, B, in, H | " + " | ".join(f"`{n}`" for n in names) + " |", "|---" * (len(names) + 1) + "|"]
    for row in data["shapes"]:
        wall = row["wall_seconds"]
        lines.append(f"| {', '.join(map(str, row['shape']))} | "
                     + " | ".join(f"{wall[n] / wall['fused']:.2f}×" for n in names) + " |")
    return "\n".join([*lines, "", f"Wall clock over the fused no-reset call, medians of {data['rounds']}"
                      " interleaved rounds."])


def _memory(data: dict[str, Any]) -> str:
    lines = ["| variant | RSS after warm-up | RSS at end | growth | autograd nodes behind the state |",
             "|---|---:|---:|---:|---:|"]
    names = {"tether": "tether collector", "naive": "naive loop"}
    for r in data["summary"]:
        lines.append(f"| {names.get(r['variant'], r['variant'])} | {r['rss_warm_mb']:.1f} MiB |"
                     f" {r['rss_end_mb']:.1f} MiB | {r['growth_pct']:+.1f} % | {r['graph_nodes_end']:,} |")
    a = data["args"]
    return "\n".join([*lines, "", f"{a['episodes']} episodes of {a['min_len']}-{a['max_len']} steps in"
                      f" {a['num_envs']} envs."])


def _compare(data: dict[str, Any]) -> str:
    s, env = data["summary"], data["environment"]
    versions = {"tether": env["tether"], "sb3-contrib": env["sb3_contrib"]}
    lines = ["| library | median steps/s (per seed) | eval return per seed | seeds ≥ 450 |",
             "|---|---:|---|---:|"]
    for library in ("tether", "sb3-contrib"):
        r = s[library]
        rates = ", ".join(f"{v:.0f}" for v in r["steps_per_second"])
        evals = ", ".join(f"{v:.1f}" for v in r["eval_means"])
        lines.append(f"| {library} {versions[library]} | {r['median_steps_per_second']:.0f} ({rates}) |"
                     f" {evals} | {r['solved']}/{len(r['seeds'])} |")
    return "\n".join([*lines, "", f"tether / sb3-contrib steps/s: **{s['ratio_steps_per_second']:.2f}×**"
                      " (ratio of medians)."])


def _compare_full(data: dict[str, Any]) -> str:
    """The whole comparison, as ``benchmarks/compare_sb3.py`` prints it (docs/compare_sb3.md)."""
    s, env, a = data["summary"], data["environment"], data["args"]
    seeds = s["tether"]["seeds"]
    lines = [f"`{data['task']}`, {a['num_envs']} envs, {a['total_steps']} env steps per run, {len(seeds)}"
             f" seed(s) ({', '.join(map(str, seeds))}), deterministic evaluation over {a['eval_episodes']}"
             f" episodes; tether mode `{a['tether_mode']}`.", "",
             "| library | version | params | median steps/s (per seed) | median train s | median steps per"
             " CPU-s | eval return per seed | median eval | seeds ≥ 450 |",
             "|---|---|---:|---:|---:|---:|---|---:|---:|"]
    versions = {"tether": env["tether"], "sb3-contrib": env["sb3_contrib"]}
    for library in ("tether", "sb3-contrib"):
        r = s[library]
        rates = ", ".join(f"{v:.0f}" for v in r["steps_per_second"])
        evals = ", ".join(f"{v:.1f}" for v in r["eval_means"])
        lines.append(f"| {library} | {versions[library]} | {r['params']} |"
                     f" {r['median_steps_per_second']:.0f} ({rates}) | {r['median_train_seconds']:.1f} |"
                     f" {r['median_steps_per_cpu_second']:.0f} | {evals} | {r['median_eval']:.1f} |"
                     f" {r['solved']}/{len(r['seeds'])} |")
    ratios = ", ".join(f"{v:.2f}" for v in s["ratio_per_seed"])
    lines += ["", f"**tether / sb3-contrib steps/s: {s['ratio_steps_per_second']:.2f}×** (ratio of medians;"
              f" per seed {ratios}); per CPU-second of the training process:"
              f" {s['ratio_steps_per_cpu_second']:.2f}×. Target ≥ 2× steps/s at equal or better return:"
              f" {'met' if s['target_met'] else 'not met'}.", "",
              f"sb3-contrib {env['sb3_contrib']}, stable-baselines3 {env['stable_baselines3']},"
              f" gymnasium {env['gymnasium']}; 1 torch thread a run."]
    return "\n".join(lines)


def _shape(row: dict[str, Any]) -> str:
    return ", ".join(map(str, row["shape"]))


def _gru(data: dict[str, Any]) -> str:
    """GRU vs LSTM forward + backward, from ``benchmarks/gru_speed.py``."""
    lines = ["| T, B, in, H | `nn.LSTM` | `nn.GRU` | tether's GRU | `nn.GRU` / LSTM |"
             " **tether's GRU / LSTM** | with 2 % starts: GRU / LSTM, both through `unroll` |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in data["sequences"]:
        ms = row["ms"]
        lines.append(f"| {_shape(row)} | {ms['lstm']:.2f} ms | {ms['gru']:.2f} ms | {ms['fast']:.2f} ms |"
                     f" {ms['gru'] / ms['lstm']:.2f}× | **{ms['fast'] / ms['lstm']:.2f}×** |"
                     f" {ms['fast+starts'] / ms['lstm_unroll+starts']:.2f}× |")
    return "\n".join([*lines, "", "Forward + backward (gradients of the input, the initial state and every"
                      " parameter), medians of this thread's CPU time over interleaved rounds, 1 thread."])


def _act_step(data: dict[str, Any]) -> str:
    """``policy.act`` against hand-written steps of the same network, from ``benchmarks/act_step.py``."""
    lines = ["| B | lean step (`nn.LSTM`) | lean step on `lstm_cell` | `act`, strict | `act`, off |"
             " **strict / lean** | off / lean | strict / lean on cells |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in data["rows"]:
        c = r["cpu_us"]
        lines.append(f"| {r['batch']} | {c['lean']:.0f} µs | {c['lean_cells']:.0f} µs |"
                     f" {c['act_strict']:.0f} µs | {c['act_off']:.0f} µs |"
                     f" **{c['act_strict'] / c['lean']:.2f}×** | {c['act_off'] / c['lean']:.2f}× |"
                     f" {c['act_strict'] / c['lean_cells']:.2f}× |")
    return "\n".join([*lines, "", f"Thread CPU time per call, medians of {data['rounds']} interleaved"
                      f" rounds of {data['calls_per_round']} calls, 1 thread."])


def _export_latency(data: dict[str, Any]) -> str:
    """The exported step (onnxruntime, ``.pt2``) against the eager ``act``, from ``export_latency.py``."""
    lines = ["| B | `act`, strict | `act`, off | onnxruntime `session.run` | `ExportedPolicy.act`, ONNX |"
             " `ExportedPolicy.act`, .pt2 | **strict `act` / `ExportedPolicy.act` ONNX** |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in data["rows"]:
        c = r["cpu_us"]
        lines.append(f"| {r['batch']} | {c['act_strict']:.0f} µs | {c['act_off']:.0f} µs |"
                     f" {c['ort_run']:.0f} µs | {c['runtime_onnx']:.0f} µs | {c['runtime_pt2']:.0f} µs |"
                     f" **{c['act_strict'] / c['runtime_onnx']:.2f}×** |")
    files = "; ".join(f"{fmt} {info['bytes'] / 1024:.0f} KiB ({info['exporter']}, {info['export_s']:.1f} s)"
                      for fmt, info in data["files"].items())
    return "\n".join([*lines, "", f"Thread CPU time per call, medians of {data['rounds']} interleaved"
                      f" rounds of {data['calls_per_round']} calls, torch and onnxruntime on 1 thread"
                      f" (onnxruntime {data['onnxruntime']}). Files: {files}."])


def _e2e(data: dict[str, Any]) -> str:
    """``tether train --preset cartpole`` steps/s per core, now and before (``benchmarks/e2e_speed.py``).

    Results that also hold steps per CPU-second (the runs' own CPU time, which the other jobs of a
    shared machine disturb far less than the wall clock) show them beside the wall-clock rates.
    """
    # "now" is the commit the line under the table names; "before" the reference the script was given
    names = {"now": "measured commit", "before": f"before ({str(data.get('before_commit'))[:10]})"}
    cpu = data.get("cpu_medians")
    if cpu:
        lines = ["| sources | core | median steps/s | per run | median steps per CPU-second |",
                 "|---|---|---:|---|---:|"]
    else:
        lines = ["| sources | core | median steps/s | per run |", "|---|---|---:|---|"]
    for key, rates in data["steps_per_second"].items():
        tree, core = key.split("/")
        extra = f" {cpu[key]:.0f} |" if cpu else ""
        lines.append(f"| {names[tree]} | {core} | {data['medians'][key]:.0f} |"
                     f" {', '.join(f'{v:.0f}' for v in rates)} |{extra}")
    ratios = "; ".join(f"{k}: **{v:.2f}×**" for k, v in data["ratios"].items())
    text = [*lines, "", f"{ratios}. {data['steps']} env steps a run, {data['rounds']} alternated"
            " rounds, ratios of medians."]
    if data.get("cpu_ratios"):
        per_cpu = "; ".join(f"{k}: **{v:.2f}×**" for k, v in data["cpu_ratios"].items())
        text += ["", f"Per CPU-second: {per_cpu}."]
    return "\n".join(text)


def _torchrl(data: dict[str, Any]) -> str:
    """tether's TorchRL modules against TorchRL's in recurrent mode (``benchmarks/torchrl_speed.py``)."""
    lines = ["| T, B, in, H | tether `LSTMModule` | TorchRL, pad | TorchRL, scan | **pad / tether** |"
             " scan / tether | tether `GRUModule` | TorchRL GRU, pad | **GRU pad / tether** |"
             " GRU scan / tether |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in data["sequences"]:
        ms = row["ms"]
        lstm, gru = ms["tether_lstm"], ms["tether_gru"]
        lines.append(f"| {_shape(row)} | {lstm:.2f} ms | {ms['torchrl_lstm_pad']:.2f} ms |"
                     f" {ms['torchrl_lstm_scan']:.1f} ms | **{ms['torchrl_lstm_pad'] / lstm:.2f}×** |"
                     f" {ms['torchrl_lstm_scan'] / lstm:.1f}× | {gru:.2f} ms |"
                     f" {ms['torchrl_gru_pad']:.2f} ms | **{ms['torchrl_gru_pad'] / gru:.2f}×** |"
                     f" {ms['torchrl_gru_scan'] / gru:.2f}× |")
    env = data["environment"]
    return "\n".join([*lines, "", f"Recurrent mode, forward + backward (gradients of the observations and"
                      f" every parameter), {env['start_rate']:.0%} random `is_init`, medians of this thread's"
                      f" CPU time over {data['rounds']} interleaved rounds, 1 thread; torchrl"
                      f" {env['torchrl']}, tensordict {env['tensordict']}."])


def _learning(data: dict[str, Any]) -> str:
    return render_table(data)


class ResultsFileError(TetherError, ValueError):
    """A results file behind a marked table is missing, is not a JSON object, or lacks a field."""


#: How each kind of block renders, and the command that writes its results file.
def _telemetry_cost(data: dict[str, Any]) -> str:
    """``tether train`` with ``--telemetry`` on and off, alternated (``benchmarks/telemetry_cost.py``)."""
    lines = [f"| {data['rounds']} rounds | median off | median on | **on / off** | range off | range on |",
             "|---|---:|---:|---:|---:|---:|"]
    for key, label in (("train_seconds", "training seconds"), ("wall_seconds", "process wall time")):
        row = data[key]
        spans = [f"{min(row[side]):.2f}-{max(row[side]):.2f} s" for side in ("off", "on")]
        lines.append(f"| {label} | {row['median_off']:.2f} s | {row['median_on']:.2f} s |"
                     f" **{row['ratio_of_medians']:.3f}** | {spans[0]} | {spans[1]} |")
    return "\n".join([*lines, "", f"`{data['command']}`, the two variants alternated round by round."])


RENDERERS: dict[str, tuple[Callable[[dict[str, Any]], str], str]] = {
    "learning": (_learning, "tether bench run GRID.toml --out DIR (see benchmarks/grids/)"),
    "compare": (_compare, "python benchmarks/compare_sb3.py"),
    "compare-full": (_compare_full, "python benchmarks/compare_sb3.py"),
    "step-overhead": (_step_overhead, "python benchmarks/step_overhead.py"),
    "sequence": (_sequence, "python benchmarks/sequence_table.py"),
    "sequence-explore": (_sequence_explore, "python benchmarks/sequence_table.py --explore"),
    "memory": (_memory, "python benchmarks/memory_growth.py"),
    "gru": (_gru, "python benchmarks/gru_speed.py"),
    "e2e": (_e2e, "python benchmarks/e2e_speed.py --before REF --out benchmarks/results/e2e_speed.json"),
    "act-step": (_act_step, "python benchmarks/act_step.py --out benchmarks/results/act_step.json"),
    "export-latency": (_export_latency,
                       "python benchmarks/export_latency.py --out benchmarks/results/export_latency.json"),
    "torchrl": (_torchrl, "python benchmarks/torchrl_speed.py"),
    "telemetry-cost": (_telemetry_cost, "python benchmarks/telemetry_cost.py --rounds 7"
                                        " --out benchmarks/results/telemetry_cost.json"),
}


@attrs.frozen(kw_only=True)
class Block:
    """One marked table: its kind, results file, current text and where it sits."""

    path: Path
    line: int
    kind: str
    source: str
    body: str
    start: int
    end: int

    @property
    def where(self) -> str:
        """``file:line kind`` for messages."""
        return f"{self.path}:{self.line}: tether-bench:{self.kind} block"


def default_files(root: str | Path) -> list[Path]:
    """``README.md`` and ``docs/*.md`` under ``root`` (those that exist)."""
    base = Path(root)
    return [p for p in [base / "README.md", *sorted((base / "docs").glob("*.md"))] if p.is_file()]


def find_blocks(path: Path, text: str) -> tuple[list[Block], list[str]]:
    """The marked blocks of one file, and a problem line for each marker without its pair."""
    blocks, paired = [], set()
    for m in _BLOCK.finditer(text):
        blocks.append(Block(path=path, line=text.count("\n", 0, m.start()) + 1, kind=m["kind"],
                            source=m["source"], body=m["body"], start=m.start("body"), end=m.end("body")))
        paired |= {m.start(), m.end("body")}
    problems = [
        f"{path}:{text.count(chr(10), 0, m.start()) + 1}: tether-bench:{m['kind']} {m['edge']} marker"
        " without its pair (expected <!-- tether-bench:KIND:begin RESULTS.json --> on its own line,"
        " the table, <!-- tether-bench:KIND:end -->)"
        for m in _MARKER.finditer(text) if m.start() not in paired]
    return blocks, problems


def regenerate_command(block: Block, root: str | Path) -> str:
    """The command that writes ``block``'s results file.

    A learning block's file is a grid's ``summary.json``: the command runs the grid of the same
    name in ``benchmarks/grids/`` (or the copy kept beside the summary) into the summary's folder.
    """
    if block.kind != "learning":
        return RENDERERS[block.kind][1] if block.kind in RENDERERS else "its benchmark script"
    out = Path(block.source).parent
    grid = Path("benchmarks") / "grids" / f"{out.name}.toml"
    if not (Path(root) / grid).is_file():
        grid = out / "grid.toml"
    return f"tether bench run {grid.as_posix()} --out {out.as_posix()}"


def read_results(block: Block, root: str | Path) -> dict[str, Any]:
    """The JSON object of ``block``'s results file.

    Raises:
        ResultsFileError: when the file is missing or does not hold a JSON object.
    """
    source, command = Path(root) / block.source, regenerate_command(block, root)
    if not source.is_file():
        raise ResultsFileError(f"{block.where}: no results file {block.source}; make it with `{command}`")
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ResultsFileError(f"{block.where}: {block.source} is not valid JSON ({err}); make it again"
                               f" with `{command}`") from None
    if not isinstance(data, dict):
        raise ResultsFileError(f"{block.where}: {block.source} holds a JSON {type(data).__name__}, expected"
                               f" an object; make it again with `{command}`")
    return data


def render_block(block: Block, root: Path) -> tuple[str | None, list[str]]:
    """The block's rendered text (``None`` when it cannot be rendered) and its problems.

    The text is the kind's table and notes, then the line naming the commit, versions and CPU the
    results file records (:func:`tether.bench.provenance.measured_on`).

    Raises:
        ResultsFileError: when the results file is not a JSON object, or lacks a field the kind shows.
    """
    if block.kind not in RENDERERS:
        return None, [f"{block.where}: unknown kind; expected one of {sorted(RENDERERS)}"]
    if not (root / block.source).is_file():
        return None, [f"{block.where}: no results file {block.source}; make it with"
                      f" `{regenerate_command(block, root)}`"]
    data = read_results(block, root)
    try:
        table = RENDERERS[block.kind][0](data).rstrip("\n")
    except KeyError as err:
        raise ResultsFileError(f"{block.where}: {block.source} has no field {err} that a {block.kind} table"
                               f" shows; make it again with `{regenerate_command(block, root)}`") from None
    return f"{table}\n\n{provenance.measured_on(data.get('provenance'))}\n", []


def check(files: Sequence[str | Path], root: str | Path) -> list[str]:
    """A line per problem: a table that differs from its render, a missing results file, a bad marker.

    Results measured on other tether sources than the checkout's are not a problem here: the
    table still says what was measured, and on which commit (``tether bench check`` lists them).

    Raises:
        ResultsFileError: when a results file is not a JSON object, or lacks a field its table shows.
    """
    base, problems = Path(root), []
    for name in files:
        path = Path(name)
        blocks, found = find_blocks(path, path.read_text(encoding="utf-8"))
        problems += found
        for block in blocks:
            text, issues = render_block(block, base)
            problems += issues
            if text is not None and text != block.body:
                problems.append(f"{block.where}: the table differs from the render of {block.source};"
                                " run `tether bench tables`")
    return problems


def regenerate(files: Sequence[str | Path], root: str | Path) -> tuple[list[Path], list[str]]:
    """Rewrite every marked block from its results file (rendering only: nothing is measured).

    Returns:
        The files changed, and the problems found (missing results files, unknown kinds, bad
        markers): a block that cannot be rendered keeps its text.

    Raises:
        ResultsFileError: when a results file is not a JSON object, or lacks a field its table shows.
    """
    base, changed, problems = Path(root), [], []
    for name in files:
        path = Path(name)
        text = path.read_text(encoding="utf-8")
        blocks, found = find_blocks(path, text)
        problems += found
        new = text
        for block in reversed(blocks):  # from the end, so earlier offsets stay valid
            rendered, issues = render_block(block, base)
            problems += issues
            if rendered is not None:
                new = new[:block.start] + rendered + new[block.end:]
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed, problems
