"""How each kind of marked table renders its results file, and the command that writes the file.

Each renderer takes a results file's JSON object and returns the table and its notes (markdown);
:data:`RENDERERS` maps a block's kind to its renderer and command. :mod:`tether.bench.tables`
finds the blocks, adds the line naming where the numbers were measured, checks and rewrites them.
A renderer reads only the fields it shows: a missing one is a ``KeyError`` that the tables turn
into one :class:`~tether.bench.tables.ResultsFileError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tether.bench.report import render_table

__all__ = ["RENDERERS", "render_act_step", "render_compare", "render_compare_full", "render_e2e",
           "render_export_latency", "render_gru", "render_learning", "render_memory", "render_r2d2_speed",
           "render_replay_speed", "render_sequence", "render_sequence_explore", "render_sequence_start_cost",
           "render_step_overhead", "render_telemetry_cost", "render_torchrl"]


def _ratio_cell(value: float, base: float, unit: str, scale: float) -> str:
    return f"{value * scale:.1f} {unit} ({value / base:.3f})"


def render_step_overhead(data: dict[str, Any]) -> str:
    """A tracked step against raw steps, as ratios (``benchmarks/step_overhead.py``)."""
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


def render_sequence(data: dict[str, Any]) -> str:
    """``unroll`` and a per-step loop against the fused call (``benchmarks/sequence_table.py``)."""
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


def render_sequence_explore(data: dict[str, Any]) -> str:
    """Every strategy timed by ``sequence_table.py --explore``, as a ratio to the fused call."""
    names = [n for n in data["shapes"][0]["wall_seconds"] if n != "fused"]
    lines = ["| T, B, in, H | " + " | ".join(f"`{n}`" for n in names) + " |", "|---" * (len(names) + 1) + "|"]
    for row in data["shapes"]:
        wall = row["wall_seconds"]
        lines.append(f"| {', '.join(map(str, row['shape']))} | "
                     + " | ".join(f"{wall[n] / wall['fused']:.2f}×" for n in names) + " |")
    return "\n".join([*lines, "", f"Wall clock over the fused no-reset call, medians of {data['rounds']}"
                      " interleaved rounds."])


def render_memory(data: dict[str, Any]) -> str:
    """Memory growth of the collector and of a naive loop (``benchmarks/memory_growth.py``)."""
    lines = ["| variant | RSS after warm-up | RSS at end | growth | autograd nodes behind the state |",
             "|---|---:|---:|---:|---:|"]
    names = {"tether": "tether collector", "naive": "naive loop"}
    for r in data["summary"]:
        lines.append(f"| {names.get(r['variant'], r['variant'])} | {r['rss_warm_mb']:.1f} MiB |"
                     f" {r['rss_end_mb']:.1f} MiB | {r['growth_pct']:+.1f} % | {r['graph_nodes_end']:,} |")
    a = data["args"]
    return "\n".join([*lines, "", f"{a['episodes']} episodes of {a['min_len']}-{a['max_len']} steps in"
                      f" {a['num_envs']} envs."])


def render_compare(data: dict[str, Any]) -> str:
    """tether against sb3-contrib in short (``benchmarks/compare_sb3.py``)."""
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


def render_compare_full(data: dict[str, Any]) -> str:
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


def render_gru(data: dict[str, Any]) -> str:
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


def render_act_step(data: dict[str, Any]) -> str:
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


def render_export_latency(data: dict[str, Any]) -> str:
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


def render_e2e(data: dict[str, Any]) -> str:
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


def render_torchrl(data: dict[str, Any]) -> str:
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


def render_learning(data: dict[str, Any]) -> str:
    """A grid's learning table (:func:`tether.bench.report.render_table`)."""
    return render_table(data)


def render_telemetry_cost(data: dict[str, Any]) -> str:
    """``tether train`` with ``--telemetry`` on and off, alternated (``benchmarks/telemetry_cost.py``).

    One row per configuration measured (``configs``); a results file of one configuration (its
    ``train_seconds`` and ``wall_seconds`` at the top level) renders as one row.
    """
    configs = data.get("configs") or [{"name": "preset", "command": data["command"],
                                       "train_seconds": data["train_seconds"],
                                       "wall_seconds": data["wall_seconds"]}]
    lines = [f"| {data['rounds']} rounds | training s, off | training s, on | **on / off** | range off |"
             " range on | process wall time, on / off |", "|---|---:|---:|---:|---:|---:|---:|"]
    for config in configs:
        row, wall = config["train_seconds"], config["wall_seconds"]
        spans = [f"{min(row[side]):.2f}-{max(row[side]):.2f} s" for side in ("off", "on")]
        lines.append(f"| {config['name']} | {row['median_off']:.2f} s | {row['median_on']:.2f} s |"
                     f" **{row['ratio_of_medians']:.3f}** | {spans[0]} | {spans[1]} |"
                     f" {wall['ratio_of_medians']:.3f} |")
    commands = "; ".join(f"{c['name']}: `{c['command']}`" for c in configs)
    return "\n".join([*lines, "", "Medians over rounds, the two variants alternated round by round"
                      f" ({commands})."])


def render_sequence_start_cost(data: dict[str, Any]) -> str:
    """Seconds per PPO update of each start of a replayed chunk (``benchmarks/sequence_start_cost.py``)."""
    names = list(next(iter(data["tasks"].values()))["variants"])
    lines = ["| task | " + " | ".join(f"`{n}`" for n in names) + " |", "|---|" + "---:|" * len(names)]
    for task, row in data["tasks"].items():
        cells = []
        for name in names:
            v = row["variants"][name]
            ratio = "" if name == "stored" else f" (**{v['ratio_to_stored']:.2f}×**)"
            cells.append(f"{v['median_seconds'] * 1000:.0f} ms{ratio}")
        lines.append(f"| {row.get('label') or task} | {' | '.join(cells)} |")
    return "\n".join([*lines, "", f"Wall seconds per update (collection and optimisation), medians of"
                      f" {data['rounds']} rounds in one process, the starts' order rotating; ratios to"
                      " `stored` on the same task; the grid's settings for seed 0, telemetry off."])


def render_replay_speed(data: dict[str, Any]) -> str:
    """The sequence replay's cost per learner batch (``benchmarks/replay_speed.py``)."""
    lines = ["| length (burn-in), period, batch, obs | `sample`, strict | `sample`, off | strict / off |"
             " `update_priorities` | `episode_history` | replay memory |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in data["shapes"]:
        strict, off = r["sample_strict_cpu_ms"], r["sample_off_cpu_ms"]
        lines.append(f"| {r['length']} ({r['burn_in']}), {r['period']}, {r['batch']}, {r['obs_dim']} |"
                     f" {strict:.3f} ms | {off:.3f} ms | {strict / off:.2f}× |"
                     f" {r['update_priorities_cpu_ms']:.3f} ms | {r['episode_history_cpu_ms']:.3f} ms |"
                     f" {r['replay_bytes'] / 2**20:.1f} MiB |")
    first = data["shapes"][0]
    return "\n".join([*lines, "", f"Thread CPU time per batch, medians of {data['rounds']} interleaved"
                      f" rounds, 1 thread: a prioritised replay full at {first['capacity']} sequences of"
                      f" {first['num_envs']} envs (LSTM state of {first['hidden']});"
                      f" `episode_history` looks back at most {data['history_max_steps']} steps."])


#: The parts of an R2D2 iteration ``benchmarks/r2d2_speed.py`` times, in the trainer's order.
_PARTS = ("collection", "sample", "replay_loss", "backward_optimiser", "update_priorities", "staleness",
          "rest")


def _r2d2_settings(r: dict[str, Any]) -> str:
    updates = r["updates_per_collect"]
    return (f"{r['task']}: {r['collect_steps']} steps × {r['num_envs']} envs, then {updates}"
            f" update{'s' if updates != 1 else ''} of {r['batch_size']} sequences of {r['length']} steps"
            f" (burn-in {r['burn_in']}), Δq every {r['staleness_every']} updates")


def render_r2d2_speed(data: dict[str, Any]) -> str:
    """R2D2's rates, the split of its iteration, and RecurrentPPO's rate (``benchmarks/r2d2_speed.py``)."""
    rates = ["| task | R2D2 env steps/s | R2D2 learner updates/s | learner alone, updates/s |"
             " env steps/s, `staleness_every = 0` | **staleness on / off** | on / off, CPU time |"
             " RecurrentPPO env steps/s | R2D2 / PPO |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    split = ["| task | iteration | collection | sample | replay + loss | backward + optimiser |"
             " `update_priorities` | staleness | rest |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in data["tasks"]:
        rates.append(f"| {r['task']} | {r['steps_per_second']:.0f} | {r['updates_per_second']:.1f} |"
                     f" {r['learner_updates_per_second']:.1f} | {r['steps_per_second_off']:.0f} |"
                     f" **{r['staleness_ratio']:.3f}** | {r['staleness_ratio_cpu']:.3f} |"
                     f" {r['ppo_steps_per_second']:.0f} |"
                     f" {r['steps_per_second'] / r['ppo_steps_per_second']:.2f}× |")
        total, ms = r["ms_per_iteration"], r["split_ms"]
        cells = " | ".join(f"{ms[p]:.2f} ms ({ms[p] / total:.0%})" for p in _PARTS)
        split.append(f"| {r['task']} | {total:.2f} ms | {cells} |")
    settings = "; ".join(_r2d2_settings(r) for r in data["tasks"])
    return "\n".join([*rates, "", *split, "", f"Wall clock, 1 torch thread, the presets' settings:"
                      f" {data['steps']} env steps after learning starts, medians of {data['rounds']} rounds"
                      " alternating the preset's `staleness_every` with 0 (same seed); the split is per"
                      f" iteration ({settings}). RecurrentPPO: its preset of the same name, {data['steps']}"
                      " env steps."])

#: How each kind of block renders, and the command that writes its results file.
RENDERERS: dict[str, tuple[Callable[[dict[str, Any]], str], str]] = {
    "learning": (render_learning, "tether bench run GRID.toml --out DIR (see benchmarks/grids/)"),
    "compare": (render_compare, "python benchmarks/compare_sb3.py"),
    "compare-full": (render_compare_full, "python benchmarks/compare_sb3.py"),
    "step-overhead": (render_step_overhead, "python benchmarks/step_overhead.py"),
    "sequence": (render_sequence, "python benchmarks/sequence_table.py"),
    "sequence-explore": (render_sequence_explore, "python benchmarks/sequence_table.py --explore"),
    "memory": (render_memory, "python benchmarks/memory_growth.py"),
    "gru": (render_gru, "python benchmarks/gru_speed.py"),
    "e2e": (render_e2e,
            "python benchmarks/e2e_speed.py --before REF --out benchmarks/results/e2e_speed.json"),
    "act-step": (render_act_step, "python benchmarks/act_step.py --out benchmarks/results/act_step.json"),
    "export-latency": (render_export_latency,
                       "python benchmarks/export_latency.py --out benchmarks/results/export_latency.json"),
    "torchrl": (render_torchrl, "python benchmarks/torchrl_speed.py"),
    "telemetry-cost": (render_telemetry_cost, "python benchmarks/telemetry_cost.py --rounds 5"
                                              " --out benchmarks/results/telemetry_cost.json"),
    "sequence-start-cost": (render_sequence_start_cost, "python benchmarks/sequence_start_cost.py --rounds 7"
                                                        " --out benchmarks/results/sequence_start_cost.json"),
    "replay-speed": (render_replay_speed,
                     "python benchmarks/replay_speed.py --out benchmarks/results/replay_speed.json"),
    "r2d2-speed": (render_r2d2_speed,
                   "python benchmarks/r2d2_speed.py --out benchmarks/results/r2d2_speed.json"),
}
