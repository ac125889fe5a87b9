"""The ``tether`` command: ``train``, ``eval`` and ``plot``.

``tether train`` takes every :class:`~tether.config.PPOConfig` setting as a flag (``--n-steps 64``)
and from a TOML file (``--config run.toml``; flags win); ``--resume RUN_DIR`` continues a run from
its last checkpoint. ``tether eval CHECKPOINT`` runs deterministic episodes; ``tether plot RUN ...``
draws learning curves of one or more runs side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from tether.config import PRESETS, ConfigError, PPOConfig

__all__ = ["main"]


def _parse_optional_float(text: str) -> float | None:
    if text.lower() in ("none", "null", ""):
        return None
    return float(text)


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (defaults shown; also settable in --config TOML)")
    for field in attrs.fields(PPOConfig):
        flag = "--" + field.name.replace("_", "-")
        help_text = f"{field.metadata['help']} (default: {field.default})"
        if field.type in (bool, "bool"):
            group.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None,
                               help=help_text)
        elif field.type in ("float | None",):
            group.add_argument(flag, dest=field.name, type=_parse_optional_float, default=None,
                               metavar="FLOAT|none", help=help_text)
        else:
            kind = {"int": int, "float": float}.get(str(field.type), str)
            group.add_argument(flag, dest=field.name, type=kind, default=None, help=help_text)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tether", description="Recurrent PPO with checked hidden states.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train RecurrentPPO (default task: tether/CartPole-NoVel-v0)")
    train.add_argument("--config", type=Path, help="TOML file of settings (top level or a [train] table)")
    train.add_argument("--preset", choices=sorted(PRESETS),
                       help="tuned settings for one of tether's tasks (flags still win)")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run saved in RUN_DIR")
    train.add_argument("--no-eval", action="store_true", help="skip the evaluation at the end")
    _add_config_flags(train)

    evaluate = sub.add_parser("eval", help="evaluate a checkpoint deterministically")
    evaluate.add_argument("checkpoint", type=Path, help="a checkpoint file or a run folder")
    evaluate.add_argument("--episodes", type=int, default=20, help="episodes to run (default: 20)")
    evaluate.add_argument("--seed", type=int, default=10_000, help="seed of the evaluation envs")
    evaluate.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")

    plot = sub.add_parser("plot", help="plot learning curves of runs side by side to a PNG")
    plot.add_argument("runs", type=Path, nargs="+", help="run folders (or metrics.jsonl files)")
    plot.add_argument("--out", type=Path, default=None, help="PNG path (default: <first run>/curves.png)")
    plot.add_argument("--metric", default="ep_return", help="metric to plot (default: ep_return)")
    return parser


def _train(args: argparse.Namespace) -> int:
    from tether.ppo import RecurrentPPO  # noqa: PLC0415 (keeps `tether --help` fast)

    overrides = {f.name: getattr(args, f.name) for f in attrs.fields(PPOConfig)
                 if getattr(args, f.name) is not None}
    if args.resume is not None:
        trainer = RecurrentPPO.resume(args.resume, **overrides)
    elif args.config is not None:
        if args.preset:
            overrides = {**PRESETS[args.preset], **overrides}
        trainer = RecurrentPPO(PPOConfig.from_toml(args.config, **overrides))
    elif args.preset is not None:
        trainer = RecurrentPPO(PPOConfig.from_preset(args.preset, **overrides))
    else:
        trainer = RecurrentPPO(PPOConfig.from_dict(overrides, source="flags"))
    try:
        summary = trainer.train()
    finally:
        trainer.close()
    print(f"trained {summary['steps']} steps in {summary['time']:.1f} s"
          f" ({summary['steps_per_second']:.0f} steps/s); run folder: {trainer.run_dir}")
    if not args.no_eval:
        result = trainer.evaluate(trainer.config.eval_episodes)
        print(f"evaluation ({result['episodes']} episodes, deterministic): mean return"
              f" {result['mean_return']:.1f} +- {result['std_return']:.1f}")
        (trainer.run_dir / "eval.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    from tether.plotting import plot_runs  # noqa: PLC0415

    try:
        png = plot_runs([trainer.run_dir], trainer.run_dir / "curves.png")
    except ValueError:
        print("learning curve: none yet (no episode finished during training)")
    else:
        print(f"learning curve: {png}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from tether.ppo import RecurrentPPO  # noqa: PLC0415

    trainer = RecurrentPPO.load(args.checkpoint, progress=False)
    try:
        result = trainer.evaluate(args.episodes, seed=args.seed, deterministic=not args.stochastic)
    finally:
        trainer.close()
    print(json.dumps(result, indent=2))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from tether.plotting import plot_runs  # noqa: PLC0415

    out = args.out or (args.runs[0] if args.runs[0].is_dir() else args.runs[0].parent) / "curves.png"
    print(plot_runs(args.runs, out, metric=args.metric))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tether`` command line; return the exit status.

    Bad input (an unknown setting, a missing or foreign checkpoint, an unknown env id) prints one
    clear line to stderr and exits with status 2; nothing on disk is touched.
    """
    args = _build_parser().parse_args(argv)
    handlers: dict[str, Any] = {"train": _train, "eval": _eval, "plot": _plot}
    try:
        return int(handlers[args.command](args))
    except (ConfigError, FileNotFoundError, ValueError, TypeError) as err:
        print(f"tether {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
