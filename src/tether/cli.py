"""The ``tether`` command: ``train``, ``eval``, ``plot`` and ``export`` (also ``python -m tether``).

``tether train --algo NAME`` (``ppo``, the default, or ``r2d2``; :data:`ALGORITHMS` lists them)
takes every setting of that algorithm's config (:class:`~tether.ppo.PPOConfig`,
:class:`~tether.r2d2.R2D2Config`) as a flag (``--n-steps 64``),
built from the setting's type and grouped by concern (env, network, run, the algorithm's own), and
from a TOML file (``--config run.toml``, flat or in ``[env]`` / ``[network]`` / ``[run]`` /
``[ppo]`` / ``[r2d2]`` tables; flags win);
``--resume RUN_DIR`` continues a run from its last checkpoint, in RUN_DIR wherever it now is.
``tether train --nproc N`` trains data-parallel on N processes of this machine (it starts
``torchrun --standalone --nproc-per-node N -m tether train ...`` with the other arguments);
``torchrun ... -m tether train ...`` does the same on any cluster (docs/scaling.md).
``tether eval CHECKPOINT`` runs deterministic episodes (``--policy FILE``: of an exported file);
``tether plot RUN ...`` draws learning curves of one or more runs side by side; ``tether export RUN``
writes the policy step to ONNX or ``.pt2`` (``tether.export.cli``).

A user's mistake (a bad setting, an unknown env id, a missing or foreign checkpoint, a missing
path: :class:`~tether.errors.TetherError` and ``FileNotFoundError``) prints one line to stderr
and exits with status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, NoReturn

import attrs

from tether._toml import tomllib
from tether.bench import cli as bench_cli
from tether.errors import ConfigError, TetherError
from tether.ppo.config import PPOConfig
from tether.ppo.presets import PRESETS
from tether.r2d2.config import R2D2Config
from tether.r2d2.presets import PRESETS as R2D2_PRESETS
from tether.train.config import merge_settings
from tether.train.run_folder import RunFolder, write_text

__all__ = ["ALGORITHMS", "Algorithm", "algorithm_of", "main"]


@attrs.frozen(kw_only=True)
class Algorithm:
    """One trainer ``tether train --algo NAME`` can run: its settings, presets and trainer class.

    Attributes:
        config: the settings class (``from_dict`` / ``from_toml`` / ``from_preset``, one flag per field).
        presets: tuned settings by name.
        trainer: ``"module:Class"`` of the trainer (imported when used, so ``--help`` stays fast);
            it takes the config and has ``train`` / ``evaluate`` / ``load`` / ``resume`` / ``close``.
        help: one line for ``--help``.
        multi_process: whether it trains on several processes (``--nproc`` / torchrun).
    """

    config: Any
    presets: dict[str, dict[str, Any]]
    trainer: str
    help: str
    multi_process: bool = True

    def trainer_class(self) -> Any:
        """The trainer class (imported here)."""
        module, _, name = self.trainer.partition(":")
        return getattr(importlib.import_module(module), name)


ALGORITHMS: dict[str, Algorithm] = {
    "ppo": Algorithm(config=PPOConfig, presets=PRESETS, trainer="tether.ppo:RecurrentPPO",
                     help="recurrent PPO (on-policy, clipped objective)"),
    "r2d2": Algorithm(config=R2D2Config, presets=R2D2_PRESETS, trainer="tether.r2d2:R2D2",
                      help="R2D2 (recurrent off-policy Q-learning from a sequence replay; discrete actions)",
                      multi_process=False),
}
"""The trainers of ``tether train --algo``: a second algorithm is one more entry."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _optional(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null", "") else kind(text)

    parse.__name__ = getattr(kind, "__name__", "value")  # argparse names the type in its errors
    return parse


def _literal(text: str) -> Any:
    """A TOML (or JSON) literal: ``3``, ``0.5``, ``true``, ``"x"``, ``[1, 2]``; else the text itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), _literal(value)


def _flag_options(hint: Any) -> dict[str, Any]:
    """argparse options for a setting of type ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is Literal:
        return {"choices": list(args), "type": type(args[0])}
    if hint in (int, float, str):
        return {"type": hint}
    if type(None) in args:
        inner = next(a for a in args if a is not type(None))
        return {"type": _optional(inner), "metavar": f"{inner.__name__.upper()}|none"}
    if origin is list:
        return {"action": "append", "type": str, "metavar": "NAME"}
    if origin is dict:
        return {"action": "append", "type": _key_value, "metavar": "KEY=VALUE"}
    raise TypeError(f"tether cli: no flag for the setting type {hint!r}")  # a new type needs one


def _add_config_flags(parser: argparse.ArgumentParser, algo: str) -> None:
    config = ALGORITHMS[algo].config
    defaults = config()
    sections = config.sections()
    groups = {section: parser.add_argument_group(
        f"{section} settings (defaults shown; also settable in --config TOML, flat or in [{section}])")
        for section in dict.fromkeys(sections.values())}
    for name, hint in config.field_types().items():
        options = _flag_options(hint)
        flag = "--" + name.replace("_", "-")
        flags = [flag]
        if options.get("action") == "append":  # repeatable: one item per flag, named in the singular
            flags = [flag.removesuffix("s"), flag]
        field = next(f for f in attrs.fields(config) if f.name == name)
        help_text = f"{field.metadata['help']} (default: {getattr(defaults, name)!r})"
        if options.get("action") == "append":
            help_text += "; repeatable"
        groups[sections[name]].add_argument(*flags, dest=name, default=None, help=help_text, **options)


def _algo_of(argv: Sequence[str]) -> str:
    """The ``--algo`` a ``train`` command line names (or its ``--config`` file's ``algo``; else ppo).

    Only picks which settings become flags: the full parse checks the choice itself.
    """
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--algo")
    pre.add_argument("--config", type=Path)
    known, _ = pre.parse_known_args(list(argv)[1:])
    if known.algo is None and known.config is not None and known.config.is_file():
        try:
            named = tomllib.loads(known.config.read_text(encoding="utf-8")).get("algo")
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
            named = None  # the full read says what is wrong with the file
        known.algo = named if isinstance(named, str) else None
    return known.algo if known.algo in ALGORITHMS else "ppo"


def _build_parser(algo: str = "ppo") -> argparse.ArgumentParser:
    parser = _Parser(prog="tether", description="Recurrent RL (PPO, R2D2) with checked hidden states.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train a recurrent policy (default: PPO on CartPole-NoVel)")
    train.add_argument("--algo", choices=sorted(ALGORITHMS), default=algo,
                       help="the trainer: " + "; ".join(f"{k}: {a.help}" for k, a in ALGORITHMS.items())
                            + f" (default: {algo})")
    train.add_argument("--config", type=Path,
                       help="TOML file of settings (flat, in a [train] table, or in tables by concern)")
    train.add_argument("--preset", choices=sorted(ALGORITHMS[algo].presets),
                       help="tuned settings for one of tether's tasks (flags still win)")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR",
                       help="continue the run saved in RUN_DIR (it keeps its settings and env)")
    train.add_argument("--overwrite", action="store_true",
                       help="start clean in a run folder that holds a run (deletes that run's files)")
    train.add_argument("--no-eval", action="store_true", help="skip the evaluation at the end")
    train.add_argument("--nproc", type=int, default=None, metavar="N",
                       help="train data-parallel on N processes of this machine (via torchrun; num_envs"
                            " is per process)")
    _add_config_flags(train, algo)

    evaluate = sub.add_parser("eval", help="evaluate a checkpoint deterministically")
    evaluate.add_argument("checkpoint", type=Path, help="a checkpoint file or a run folder")
    evaluate.add_argument("--episodes", type=int, default=20, help="episodes to run (default: 20)")
    evaluate.add_argument("--seed", type=int, default=10_000, help="seed of the evaluation envs (0 or more)")
    evaluate.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    evaluate.add_argument("--json", action="store_true", help="print every return as JSON instead")
    evaluate.add_argument("--env-import", dest="env_imports", action="append", default=[], metavar="NAME",
                          help="allow the checkpoint's env to import the module NAME; repeatable")
    from tether.export import cli as export_cli  # noqa: PLC0415 (after tether.ppo: its missing-extra line)

    export_cli.add_eval_arguments(evaluate)
    export_cli.add_parser(sub)

    plot = sub.add_parser("plot", help="plot learning curves of runs side by side to a PNG")
    plot.add_argument("runs", type=Path, nargs="+", help="run folders (or metrics.jsonl files)")
    plot.add_argument("--out", type=Path, default=None, help="PNG path (default: <first run>/curves.png)")
    plot.add_argument("--metric", default="ep_return", help="metric to plot (default: ep_return)")
    plot.add_argument("--keys", nargs="+", default=None, metavar="KEY",
                      help="plot these metrics or patterns ('state/stale_*') against steps, a panel each")
    bench_cli.add_parser(sub)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags (repeated ``--env-kwarg`` pairs as one table)."""
    out: dict[str, Any] = {}
    for name, hint in ALGORITHMS[args.algo].config.field_types().items():
        value = getattr(args, name)
        if value is None:
            continue
        out[name] = dict(value) if typing.get_origin(hint) is dict else value
    return out


def _summary_line(result: Any) -> str:
    kind = "deterministic" if result["deterministic"] else "stochastic"
    return (f"evaluation ({result['episodes']} episodes, {kind}): mean return"
            f" {result['mean_return']:.3g} +- {result['std_return']:.3g}")


def _without_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` minus ``--nproc N`` / ``--nproc=N`` (what each launched process gets)."""
    out: list[str] = []
    skip = False
    for item in argv:
        if skip:
            skip = False
        elif item == "--nproc":
            skip = True
        elif not item.startswith("--nproc="):
            out.append(item)
    return out


def _check_launch(args: argparse.Namespace) -> None:
    """Refuse in one line, before starting any process, what every rank would refuse."""
    from tether.train.checkpoint import load_checkpoint  # noqa: PLC0415

    algo = ALGORITHMS[args.algo]
    if args.nproc < 1:
        raise ConfigError(f"--nproc: expected 1 or more processes, got {args.nproc}")
    if not algo.multi_process:
        raise ConfigError(f"--nproc {args.nproc}: --algo {args.algo} trains on one process; drop --nproc")
    overrides = _overrides(args)
    if args.resume is not None:
        source = args.resume / "checkpoint.pt" if args.resume.is_dir() else args.resume
        RunFolder(source.parent).check(resume=True)
        saved = load_checkpoint(source).get("world_size", 1)
        if saved != args.nproc:
            raise ConfigError(f"{source}: this run was trained on {saved} rank(s) and cannot continue on"
                              f" {args.nproc}; resume it on {saved}"
                              f" (tether train --resume DIR --nproc {saved})")
        return
    RunFolder(_settings(algo, args, overrides).run_dir).check(overwrite=args.overwrite)


def _settings(algo: Algorithm, args: argparse.Namespace, overrides: dict[str, Any]) -> Any:
    """A fresh run's settings: the TOML file, then the preset, then the flags (each wins over the last)."""
    if args.config is not None:
        return algo.config.from_toml(args.config, **merge_settings(algo.presets[args.preset] if args.preset
                                                                   else {}, overrides))
    if args.preset is not None:
        return algo.config.from_preset(args.preset, **overrides)
    return algo.config.from_dict(overrides, source="flags")


def _launch(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run ``tether train`` (``argv`` minus ``--nproc``) on ``args.nproc`` local processes via torchrun."""
    from tether.train import launcher  # noqa: PLC0415

    _check_launch(args)
    return launcher.launch(launcher.torchrun_command(args.nproc, _without_nproc(argv)))


def _train(args: argparse.Namespace) -> int:
    from tether import distributed  # noqa: PLC0415 (keeps `tether --help` fast)
    from tether.train.launcher import arm_worker  # noqa: PLC0415

    arm_worker()  # a worker of `tether train --nproc`: ends when its torchrun does
    launched = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if args.nproc is not None and args.nproc != launched and "WORLD_SIZE" in os.environ:
        raise ConfigError(f"--nproc {args.nproc}: this process is one of {launched} started by torchrun;"
                          " drop --nproc (torchrun --nproc-per-node sets the count)")
    try:
        return _train_here(args)
    finally:
        distributed.shutdown()


def _train_here(args: argparse.Namespace) -> int:
    from tether import distributed  # noqa: PLC0415

    algo = ALGORITHMS[args.algo]
    trainer_class = algo.trainer_class()
    overrides = _overrides(args)
    if args.resume is not None:
        if args.config is not None or args.preset is not None or args.overwrite:
            raise ConfigError("--resume continues a run with its own settings; drop --config / --preset"
                              " / --overwrite")
        allowed = overrides.pop("env_imports", [])  # --env-import: consent to the run's own imports
        trainer = trainer_class.resume(args.resume, allow_imports=allowed, **overrides)
    else:
        trainer = trainer_class(_settings(algo, args, overrides), overwrite=args.overwrite)
    main_process = distributed.is_main_process()
    try:
        summary = trainer.train()
        if not main_process:  # rank 0 reports, evaluates and plots
            return 0
        ranks = distributed.world_size()
        print(f"trained {summary['steps']} steps in {summary['time']:.1f} s"
              f" ({summary['steps_per_second']:.0f} steps/s{f' on {ranks} ranks' if ranks > 1 else ''});"
              f" run folder: {trainer.run_dir}")
        if not args.no_eval:
            result = trainer.evaluate(trainer.config.eval_episodes)
            print(_summary_line(result))
            write_text(trainer.run_dir / "eval.json", json.dumps(result, indent=2))
    finally:
        trainer.close()
    _draw_curves(trainer.run_dir)
    return 0


def _draw_curves(run_dir: Path) -> None:
    from tether.errors import MissingDependencyError, RunFolderError  # noqa: PLC0415
    from tether.train.plotting import plot_runs  # noqa: PLC0415

    try:
        png = plot_runs([run_dir], run_dir / "curves.png")
    except MissingDependencyError as err:
        print(f"tether train: note: no learning curve drawn ({err}); the run's results are written",
              file=sys.stderr)
    except RunFolderError:
        print("learning curve: none yet (no episode finished during training)")
    else:
        print(f"learning curve: {png}")


def algorithm_of(data: dict[str, Any], source: Path) -> Algorithm:
    """The :data:`ALGORITHMS` entry of a checkpoint's payload (its ``algo``; PPO before the key existed).

    Raises:
        CheckpointError: for an algorithm this tether does not know.
    """
    from tether.errors import CheckpointError  # noqa: PLC0415

    name = data.get("algo", "ppo")  # checkpoints before the algo key are PPO's
    if name not in ALGORITHMS:
        raise CheckpointError(f"{source}: a run of the algorithm {name!r}, which this tether does not know"
                              f" (it knows {', '.join(sorted(ALGORITHMS))})")
    return ALGORITHMS[name]


def _trainer_of(path: Path) -> Any:
    """The trainer class of the run saved at ``path`` (a file or a run folder), by its ``algo``."""
    from tether.train.checkpoint import checkpoint_path, load_checkpoint  # noqa: PLC0415

    try:
        source = checkpoint_path(path)
    except FileNotFoundError:  # the trainer's load says what is missing
        return ALGORITHMS["ppo"].trainer_class()
    return algorithm_of(load_checkpoint(source), source).trainer_class()


def _eval(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        raise ConfigError(f"--episodes: expected at least 1, got {args.episodes}")
    if args.seed < 0:
        raise ConfigError(f"--seed: expected 0 or more (gymnasium seeds are non-negative), got {args.seed}")
    if args.policy is not None:
        from tether.export import cli as export_cli  # noqa: PLC0415

        return export_cli.run_eval(args)
    trainer = _trainer_of(args.checkpoint).load(args.checkpoint, progress=False,
                                                allow_imports=args.env_imports)
    try:
        result = trainer.evaluate(args.episodes, seed=args.seed, deterministic=not args.stochastic)
    finally:
        trainer.close()
    print(json.dumps(result, indent=2) if args.json else _summary_line(result))
    return 0


def _export(args: argparse.Namespace) -> int:
    from tether.export import cli as export_cli  # noqa: PLC0415

    return export_cli.run(args)


def _plot(args: argparse.Namespace) -> int:
    from tether.train.plotting import plot_keys, plot_runs  # noqa: PLC0415

    folder = args.runs[0] if args.runs[0].is_dir() else args.runs[0].parent
    if args.keys:
        print(plot_keys(args.runs, args.out or folder / "keys.png", args.keys))
        return 0
    out = args.out or folder / "curves.png"
    print(plot_runs(args.runs, out, metric=args.metric))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tether`` command line; return the exit status.

    A user's mistake (a :class:`~tether.errors.TetherError`: an unknown setting or env id, a
    foreign or corrupt checkpoint, ...; or a missing path) prints one clear line to stderr and
    exits with status 2, touching nothing on disk. Any other exception is a bug: it propagates
    with its traceback.
    """
    raw = list(sys.argv[1:] if argv is None else argv)
    args = _build_parser(_algo_of(raw) if raw[:1] == ["train"] else "ppo").parse_args(raw)
    if args.command == "train" and args.nproc not in (None, 1) and "WORLD_SIZE" not in os.environ:
        try:
            return _launch(args, raw)
        except (TetherError, FileNotFoundError) as err:
            print(f"tether train: error: {_one_line(err)}", file=sys.stderr)
            return 2
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {"train": _train, "eval": _eval,
                                                                "plot": _plot, "bench": bench_cli.run,
                                                                "export": _export}
    try:
        return int(handlers[args.command](args))
    except (TetherError, FileNotFoundError) as err:
        print(f"tether {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2


def _one_line(err: BaseException) -> str:
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
