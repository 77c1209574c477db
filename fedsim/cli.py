"""The ``fedsim`` command: run, validate, list, plot, infoplane; sweep, compare, init (fedsim/study/cli.py).

User errors end with one ``error:`` line on stderr and exit status 2. Anything else is
an internal failure: one ``error: internal error: ...`` line saying where the full
traceback was written (the run's run.log, else a temporary file), exit status 1; the
traceback itself reaches the terminal only with ``--debug``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import traceback
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
    p.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
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
    l.add_argument("-v", "--verbose", action="store_true",
                   help="each plugin's module, paper, parameters, defaults and constraints")
    pl = sub.add_parser("plot", help="redraw the figures of a run directory")
    pl.add_argument("dir")
    pl.add_argument("--rows", metavar="KEY", help="sweep directory: the swept key of the table's rows")
    pl.add_argument("--cols", metavar="KEY", help="sweep directory: the swept key of the table's columns")
    ip = sub.add_parser("infoplane", help="I(X;T), I(T;Y) of a run's saved heads (output.save_heads)")
    ip.add_argument("dir", help="run directory of a run with output.save_heads > 0")
    ip.add_argument("--bins", type=int, default=30, help="equal bins per softmax unit over [0, 1] (default 30)")
    ip.add_argument("--no-plot", action="store_true", help="write infoplane.jsonl only")
    study_cli.add_parsers(sub)
    for command in sub.choices.values():  # `fedsim run ... --debug` as well as `fedsim --debug run ...`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the traceback of an internal error")
    return p


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _user_error(message: str) -> int:
    sys.stderr.write(f"error: {_one_line(message)}\n")
    return 2


def _user_errors() -> tuple:
    """Exception types that mean the user's input cannot work (exit 2)."""
    from fedsim.data.datasets import DataError
    from fedsim.registry import UnknownNameError
    kinds = [ScenarioError, DataError, UnknownNameError]
    try:
        from fedsim.engine.ray_backend import RayConnectError
        kinds.append(RayConnectError)
    except Exception:  # Ray backend not importable: no such errors
        pass
    return tuple(kinds)


def _internal_error(exc: BaseException, debug: bool) -> int:
    """One line naming the failure and where its traceback is; exit status 1."""
    text = "".join(traceback.format_exception(exc))
    where = getattr(exc, "run_log", None)  # the runner already wrote it into run.log
    if where is None:
        try:
            with tempfile.NamedTemporaryFile("w", prefix="fedsim-traceback-", suffix=".txt",
                                             delete=False) as fh:
                fh.write(text)
                where = fh.name
        except OSError:
            where = None
    if debug:
        sys.stderr.write(text)
    summary = str(exc).strip().splitlines()
    summary = f"{exc.__class__.__name__}: {summary[0][:200]}" if summary else exc.__class__.__name__
    tail = f"; full traceback in {where}" if where else ""
    sys.stderr.write(f"error: internal error: {_one_line(summary)}{tail}\n")
    return 1


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return _user_error("interrupted")
    except Exception as exc:
        if isinstance(exc, _user_errors()):
            return _user_error(str(exc))
        return _internal_error(exc, args.debug)


def _describe_plugin(kind: str, name: str) -> str:
    """``fedsim list -v``: name and module, the paper, then one line per parameter:
    ``name = default  (must be ...)``."""
    import inspect
    from fedsim.registry import describe
    info = describe(kind, name)
    lines = [f"{info['name']}  ({info['module']})", f"  {info['paper']}"]
    for arg, default, constraint in info["parameters"] or ():
        shown = "required" if default is inspect.Parameter.empty else f"= {default!r}"
        lines.append(f"  {arg} {shown}  ({constraint})")
    if info["parameters"] == []:
        lines.append("  no arguments")
    return "\n".join(lines)


def _dispatch(args) -> int:
    from fedsim.registry import names
    if args.command in study_cli.COMMANDS or study_cli.is_sweep_plot(args):
        return study_cli.dispatch(args)
    if args.command == "list":
        if args.kind not in LIST_KINDS:
            return _user_error(f"unknown kind {args.kind!r}; allowed: {', '.join(LIST_KINDS)}")
        if args.verbose:
            print("\n\n".join(_describe_plugin(LIST_KINDS[args.kind], name) for name in names(LIST_KINDS[args.kind])))
        else:
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
    if args.command == "infoplane":
        if args.bins < 2:
            return _user_error(f"--bins: must be an int >= 2; got {args.bins}")
        from fedsim import infoplane
        rows = infoplane.run_information_plane(args.dir, args.bins, plot=not args.no_plot)
        print(infoplane.summary_table(rows))
        print(Path(args.dir) / "infoplane.jsonl")
        return 0
    # run
    if args.file is None and args.resume is None:
        return _user_error("run needs a scenario FILE or --resume DIR")
    if args.resume is not None and args.file is not None:
        return _user_error("give either a scenario FILE or --resume DIR, not both")
    from fedsim.runner import run
    _, run_dir = run(args.file, overrides=args.overrides, out=args.out, resume=args.resume,
                     progress=False if args.no_progress else None)
    print(run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
