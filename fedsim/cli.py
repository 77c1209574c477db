"""The ``fedsim`` command: run, validate, list, plot; sweep, compare, init (fedsim/study/cli.py).

User errors end with one ``error:`` line on stderr and exit status 2; internal
failures exit 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedsim.config import ScenarioError
from fedsim.study import cli as study_cli

LIST_KINDS = {"datasets": "datasets", "partitions": "partitions", "backbones": "backbones",
              "heads": "heads", "topologies": "topologies", "attacks": "attacks", "defenses": "defenses",
              "inversions": "inversions", "privacy_defenses": "privacy_defenses"}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        sys.stderr.write(f"error: {message}\n")
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fedsim", description="Decentralized federated learning simulator")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="run a scenario")
    r.add_argument("file", nargs="?", help="scenario YAML (not needed with --resume)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("--out", help="run directory")
    r.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR")
    r.add_argument("--no-progress", action="store_true", help="plain log lines instead of a bar")
    v = sub.add_parser("validate", help="check a scenario")
    v.add_argument("file")
    v.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    l = sub.add_parser("list", help="list registered names")
    l.add_argument("kind", help=", ".join(LIST_KINDS))
    pl = sub.add_parser("plot", help="redraw the figures of a run directory")
    pl.add_argument("dir")
    pl.add_argument("--rows", metavar="KEY", help="sweep directory: the swept key of the table's rows")
    pl.add_argument("--cols", metavar="KEY", help="sweep directory: the swept key of the table's columns")
    study_cli.add_parsers(sub)
    return p


def _user_error(message: str) -> int:
    sys.stderr.write(f"error: {message}\n")
    return 2


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ScenarioError as exc:
        return _user_error(str(exc))
    except KeyboardInterrupt:
        return _user_error("interrupted")


def _dispatch(args) -> int:
    from fedsim.data.datasets import DataError
    from fedsim.registry import UnknownNameError, names
    if args.command in study_cli.COMMANDS or study_cli.is_sweep_plot(args):
        return study_cli.dispatch(args)
    if args.command == "list":
        if args.kind not in LIST_KINDS:
            return _user_error(f"unknown kind {args.kind!r}; allowed: {', '.join(LIST_KINDS)}")
        print("\n".join(names(LIST_KINDS[args.kind])))
        return 0
    if args.command == "validate":
        from fedsim import config
        config.load(args.file, args.overrides)
        print(f"{args.file}: valid")
        return 0
    if args.command == "plot":
        path = Path(args.dir)
        if not (path / "metrics.jsonl").exists() or not (path / "config.yaml").exists():
            return _user_error(f"{path}: not a run directory (needs config.yaml and metrics.jsonl)")
        from fedsim import plots
        for written in plots.draw_all(path):
            print(written)
        return 0
    # run
    if args.file is None and args.resume is None:
        return _user_error("run needs a scenario FILE or --resume DIR")
    if args.resume is not None and args.file is not None:
        return _user_error("give either a scenario FILE or --resume DIR, not both")
    from fedsim.runner import run
    try:
        _, run_dir = run(args.file, overrides=args.overrides, out=args.out, resume=args.resume,
                         progress=False if args.no_progress else None)
    except (DataError, UnknownNameError) as exc:
        return _user_error(str(exc))
    except _ray_user_errors() as exc:
        return _user_error(str(exc))
    print(run_dir)
    return 0


def _ray_user_errors():
    try:
        from fedsim.engine.ray_backend import RayConnectError
        return (RayConnectError,)
    except Exception:  # Ray backend not importable: no such errors
        return ()


if __name__ == "__main__":
    sys.exit(main())
