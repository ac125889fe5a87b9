"""``tether export RUN_OR_CHECKPOINT --format onnx|pt2 --out FILE`` and ``tether eval RUN --policy FILE``.

``tether export`` writes one policy step of a trained run to a file (the episode reset and the
observation normalisation inside the graph, the metadata a runtime needs inside the file), prints
its inputs and outputs, and with ``--check`` runs the parity harness: the eager policy, the
in-memory ``torch.export`` graph and the file (onnxruntime, or the loaded ``.pt2``) side by side
on the run's env. A bad input (no checkpoint, a foreign file, a bad ``--batch``, a part that
cannot be exported) is one line and exit status 2; a failed parity check exits 1.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["add_eval_arguments", "add_parser", "run", "run_eval"]


def add_parser(subparsers: Any) -> None:
    """Add the ``export`` command to the ``tether`` command's subparsers."""
    parser = subparsers.add_parser("export", help="export a trained policy's step to ONNX or .pt2")
    parser.add_argument("run", type=Path, help="a run folder (holding checkpoint.pt) or a checkpoint file")
    parser.add_argument("--out", type=Path, required=True, help="the file to write (.onnx or .pt2)")
    parser.add_argument("--format", dest="file_format", choices=["onnx", "pt2"], default=None,
                        help="onnx (torch.onnx) or pt2 (torch.export); default: from --out's suffix")
    batch = parser.add_mutually_exclusive_group()
    batch.add_argument("--batch", type=int, default=None, metavar="N", help="fix the batch (rows) at N")
    batch.add_argument("--dynamic-batch", action="store_true", help="leave the batch dim free (the default)")
    parser.add_argument("--stochastic", action="store_true",
                        help="output each head's distribution parameters instead of its deterministic action")
    parser.add_argument("--exporter", choices=["auto", "dynamo", "torchscript"], default="auto",
                        help="ONNX exporter: dynamo, else TorchScript (auto, the default), or one of them")
    parser.add_argument("--check", action="store_true",
                        help="run the parity harness: eager policy vs exported graph vs the file")
    parser.add_argument("--check-steps", type=int, default=500, metavar="N",
                        help="env steps of the parity run (default: 500)")
    parser.add_argument("--check-envs", type=int, default=None, metavar="N",
                        help="envs of the parity run (default: --batch, else 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the parity run's env and forced resets")
    parser.add_argument("--env-import", dest="env_imports", action="append", default=[], metavar="NAME",
                        help="allow the checkpoint's env to import the module NAME; repeatable")


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--policy FILE`` to ``tether eval``."""
    parser.add_argument("--policy", type=Path, default=None, metavar="FILE",
                        help="evaluate this exported file (tether export) on the run's env instead of the"
                             " run's own policy: same seeds and episodes")


def _signature(meta: dict[str, Any], names: list[str]) -> str:
    sig = meta["signature"]
    return ", ".join(f"{n} [{', '.join(map(str, sig[n]['shape']))}] {sig[n]['dtype']}" for n in names)


def _describe(result: Any, run: Path, sha: str) -> list[str]:
    meta = result.metadata
    size = result.path.stat().st_size
    batch = "dynamic batch" if meta["batch"] == "dynamic" else f"batch {meta['batch']}"
    kind = "deterministic actions" if meta["deterministic"] else "distribution parameters"
    norm = ", observation normalisation inside" if meta["obs_normalization"] else ""
    inputs = [*meta["inputs"]["obs"], *meta["inputs"]["state"], meta["inputs"]["episode_start"],
              *meta["inputs"]["action_mask"]]
    outputs = [*meta["outputs"]["action"], *meta["outputs"]["distribution"], meta["outputs"]["value"],
               *meta["outputs"]["state"]]
    lines = [f"exported {run} (checkpoint sha256 {sha[:12]}) to {result.path}: {result.format} via"
             f" {result.exporter}, {batch}, {kind}{norm}, {size / 1024:.1f} KiB",
             f"inputs: {_signature(meta, inputs)}", f"outputs: {_signature(meta, outputs)}",
             "episode_start rows are zeroed inside the graph; feed each call the previous call's"
             " next_* state"]
    return [*lines, *(f"note: {n}" for n in result.notes)]


def run(args: argparse.Namespace) -> int:
    """Handle ``tether export``; return the exit status (1 when the parity check fails).

    Raises:
        ExportError / ExportedFileError / CheckpointError / ConfigError / FileNotFoundError: bad
            input (the ``tether`` command prints one line and exits 2).
    """
    from tether.errors import ConfigError  # noqa: PLC0415 (keeps `tether --help` fast)
    from tether.export.exporters import export_policy  # noqa: PLC0415
    from tether.export.source import load_run  # noqa: PLC0415

    if args.batch is not None and args.batch < 1:
        raise ConfigError(f"--batch: expected 1 or more rows, got {args.batch} (or --dynamic-batch)")
    envs = args.check_envs or args.batch or 4
    if args.check and (args.check_steps < 1 or envs < 1 or (args.batch is not None and envs != args.batch)):
        raise ConfigError(f"--check-steps / --check-envs: expected at least 1 step and"
                          f" {args.batch or '1 or more'}"
                          f" envs, got {args.check_steps} steps and {envs} envs")
    if args.file_format is None and args.out.suffix not in (".onnx", ".pt2"):
        raise ConfigError(f"--out {args.out}: expected a .onnx or .pt2 file name, or --format onnx|pt2")
    source = load_run(args.run, allow_imports=args.env_imports)
    settings = source.settings
    masks = bool(settings.action_masks)
    result = export_policy(source.policy, args.out, file_format=args.file_format, batch=args.batch,
                           deterministic=not args.stochastic, action_masks=masks, obs_norm=source.obs_norm,
                           exporter=args.exporter, env_id=settings.env_id,
                           env_kwargs=dict(settings.env_kwargs),
                           env_imports=list(settings.env_imports), checkpoint_sha256=source.sha256,
                           observation_space=source.observation_space)
    print("\n".join(_describe(result, args.run, source.sha256)))
    if not args.check:
        return 0
    from tether.export.parity import check_parity  # noqa: PLC0415
    from tether.export.runtime import ExportedPolicy, torch_runner  # noqa: PLC0415

    meta = result.metadata
    sides = {"torch.export (in memory)": ExportedPolicy(meta, torch_runner(result.program.module(), meta)),
             "onnxruntime" if result.format == "onnx" else "pt2 file": ExportedPolicy.load(result.path)}
    report = check_parity(source.policy, sides, env_id=settings.env_id, num_envs=envs, steps=args.check_steps,
                          seed=args.seed, env_kwargs=dict(settings.env_kwargs),
                          env_imports=settings.env_imports,
                          obs_norm=source.obs_norm)
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


def run_eval(args: argparse.Namespace) -> int:
    """Handle ``tether eval RUN --policy FILE``: the file on the run's env, seeds and episodes.

    Raises:
        ExportedFileError / CheckpointError / ConfigError / FileNotFoundError: bad input.
    """
    import sys  # noqa: PLC0415

    from tether.export.evaluation import evaluate_exported  # noqa: PLC0415
    from tether.export.runtime import ExportedPolicy  # noqa: PLC0415
    from tether.export.source import run_settings  # noqa: PLC0415

    settings, checkpoint = run_settings(args.checkpoint, allow_imports=args.env_imports)
    policy = ExportedPolicy.load(args.policy, seed=args.seed)  # a stochastic file samples reproducibly
    recorded = policy.metadata.get("checkpoint_sha256")
    if recorded is not None:
        from tether.export.exporters import file_sha256  # noqa: PLC0415

        if recorded != file_sha256(checkpoint):
            print(f"tether eval: note: {args.policy} was exported from another checkpoint than {checkpoint}"
                  f" (sha256 {recorded[:12]})", file=sys.stderr)
    if args.stochastic and policy.metadata["deterministic"]:
        print(f"tether eval: note: {args.policy} holds deterministic actions; --stochastic needs a file"
              " exported with --stochastic", file=sys.stderr)
    result = evaluate_exported(policy, env_id=settings.env_id, episodes=args.episodes, seed=args.seed,
                               env_kwargs=dict(settings.env_kwargs), env_imports=settings.env_imports,
                               action_masks=bool(settings.action_masks))
    kind = "deterministic" if result["deterministic"] else "stochastic"
    print(json.dumps(result, indent=2) if args.json else
          f"evaluation of {args.policy} ({result['episodes']} episodes, {kind}): mean return"
          f" {result['mean_return']:.3g} +- {result['std_return']:.3g}")
    return 0
