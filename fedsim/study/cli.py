"""The study commands of ``fedsim``: ``sweep``, ``compare``, ``init``, and ``plot`` of a sweep
directory. ``fedsim.cli`` adds these parsers and hands the parsed arguments here."""
from __future__ import annotations

from pathlib import Path

from fedsim.config import ScenarioError

COMMANDS = ("sweep", "compare", "init")


def add_parsers(sub) -> None:
    s = sub.add_parser("sweep", help="run a scenario over a grid of settings and seeds; tables and figures")
    s.add_argument("file", help="sweep YAML (see README: Studies)")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the base scenario")
    s.add_argument("--jobs", type=int, default=None, help="worker processes (default: the number of cores)")
    s.add_argument("--dry-run", action="store_true", help="print the cells and their count; run nothing")
    s.add_argument("--out", help="sweep directory (default runs/sweeps/<sweep name>)")
    s.add_argument("--ray", metavar="auto|ADDRESS", help="run the cells as Ray tasks on this cluster")
    s.add_argument("--rows", metavar="KEY", help="swept key whose values are the table's rows")
    s.add_argument("--cols", metavar="KEY", help="swept key whose values are the table's columns")
    s.add_argument("--no-progress", action="store_true", help="plain log lines instead of a bar")
    c = sub.add_parser("compare", help="several runs' accuracy curves in one figure")
    c.add_argument("dirs", nargs="+", metavar="RUN_DIR")
    c.add_argument("--labels", nargs="+", help="one label per run directory (default: their names)")
    c.add_argument("--out", default="compare", help="figure file, .png and .pdf both written (default compare)")
    i = sub.add_parser("init", help="print a scenario with every key, its default and a comment")
    i.add_argument("--full", action="store_true", help="also the optional adversary and privacy sections")


def is_sweep_plot(args) -> bool:
    from fedsim.study import is_sweep_dir
    return args.command == "plot" and is_sweep_dir(args.dir)


def dispatch(args) -> int:
    if args.command == "init":
        from fedsim.template import scenario_template
        print(scenario_template(full=args.full), end="")
        return 0
    if args.command == "compare":
        return _compare(args)
    from fedsim import study
    if args.command == "plot":
        for path in study.redraw(args.dir, getattr(args, "rows", None), getattr(args, "cols", None)):
            print(path)
        return 0
    if args.jobs is not None and args.jobs < 1:
        raise ScenarioError(f"--jobs: must be >= 1 (got {args.jobs})")
    sweep = study.load(args.file, args.overrides)
    if args.dry_run:
        from fedsim.study.spec import check_layout
        check_layout(sweep, args.rows, args.cols, str(sweep.path), flags=("--rows", "--cols"))
        print(study.dry_run(sweep, Path(args.out) if args.out else study.default_dir(sweep)))
        return 0
    sweep_dir = study.run_sweep(sweep, out=args.out, jobs=args.jobs, ray=args.ray, rows=args.rows,
                                cols=args.cols, progress=False if args.no_progress else None)
    print(sweep_dir)
    return 0


def _compare(args) -> int:
    from fedsim.study.figures import compare
    dirs = [Path(d) for d in args.dirs]
    for d in dirs:
        if not (d / "metrics.jsonl").exists():
            raise ScenarioError(f"{d}: not a run directory (no metrics.jsonl)")
    labels = args.labels or [d.name for d in dirs]
    if len(labels) != len(dirs):
        raise ScenarioError(f"--labels: {len(labels)} labels for {len(dirs)} run directories; give one per run")
    out = Path(args.out)
    if out.parent != Path(".") and not out.parent.is_dir():
        raise ScenarioError(f"--out {out}: no such directory {out.parent}")
    for path in compare(dirs, labels, out):
        print(path)
    return 0
