"""Figures of a run: accuracy over rounds and the topology (PNG, Agg backend)."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402


def _finish_accuracy_axes(fig, ax, title: str, path) -> None:
    """The common end of an accuracy figure: 0-1 axis, grid, title, legend, saved, closed."""
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def accuracy_plot(rows: list[dict], path: Path, title: str = "") -> None:
    """Honest peers' mean accuracy with the min-max band, per evaluated round."""
    rounds = [r["round"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.fill_between(rounds, [r["accuracy_min"] for r in rows], [r["accuracy_max"] for r in rows],
                    alpha=0.25, label="min-max over honest peers")
    ax.plot(rounds, [r["accuracy_mean"] for r in rows], lw=2, label="mean")
    if rows and "attack_success_rate" in rows[0]:
        ax.plot(rounds, [r["attack_success_rate"] for r in rows], "--", label="backdoor success")
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    _finish_accuracy_axes(fig, ax, title, path)


def time_plots(rows: list[dict], plots: Path, title: str = "") -> list[Path]:
    """With a simulated network (rows carry ``sim_time_s``): honest peers' accuracy
    against simulated time (``accuracy_time.png``) and the online peers over time
    (``online_peers.png``)."""
    times = [r["sim_time_s"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.fill_between(times, [r["accuracy_min"] for r in rows], [r["accuracy_max"] for r in rows],
                    alpha=0.25, label="min-max over honest peers")
    ax.plot(times, [r["accuracy_mean"] for r in rows], lw=2, label="mean")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("test accuracy")
    _finish_accuracy_axes(fig, ax, title, plots / "accuracy_time.png")
    fig, ax = plt.subplots(figsize=(6, 3), dpi=120)
    ax.step(times, [r["online_peers"] for r in rows], where="post", label="online")
    if "active_peers" in rows[0]:
        ax.step(times, [r["active_peers"] for r in rows], where="post", label="taking part (sync rounds)")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("peers")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(plots / "online_peers.png")
    plt.close(fig)
    return [plots / "accuracy_time.png", plots / "online_peers.png"]


def topology_plot(graph: nx.Graph, byzantine, curious, path: Path, seed: int = 0) -> None:
    """The round-1 graph: honest peers blue, Byzantine red, curious orange."""
    n = graph.number_of_nodes()
    fig, ax = plt.subplots(figsize=(6, 6), dpi=120)
    pos = nx.spring_layout(graph, seed=seed) if n <= 2000 else nx.random_layout(graph, seed=seed)
    byz, cur = set(byzantine), set(curious)
    colours = ["tab:red" if i in byz else "tab:orange" if i in cur else "tab:blue" for i in graph.nodes()]
    size = max(4, 300 / max(1, n ** 0.5))
    if graph.number_of_edges() <= 50000:
        nx.draw_networkx_edges(graph, pos, ax=ax, alpha=0.2, width=0.5)
    nx.draw_networkx_nodes(graph, pos, ax=ax, node_color=colours, node_size=size)
    if n <= 60:
        nx.draw_networkx_labels(graph, pos, ax=ax, font_size=7)
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], marker="o", ls="", color=c, label=l)
               for c, l in (("tab:blue", "honest"), ("tab:red", "Byzantine"), ("tab:orange", "curious"))]
    ax.legend(handles=handles, loc="upper right")
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def draw_all(run_dir, world=None, graph=None) -> list[Path]:
    """Draw every figure of a run directory; without ``world``/``graph`` (``fedsim
    plot``) the topology is rebuilt from config.yaml."""
    from fedsim.results import RunDir, RunDirError, read_privacy_record
    run_dir = Path(run_dir)
    # Read and check every input first, so that a bad file leaves the old figures alone.
    rows = RunDir(run_dir).read_metrics()
    keys = ("accuracy_mean", "accuracy_min", "accuracy_max")
    for number, row in enumerate(rows, 1):
        if not all(isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool) for k in keys):
            raise RunDirError(f"{run_dir / 'metrics.jsonl'} line {number}: a row needs numbers {', '.join(keys)}")
    summary = _read_summary(run_dir / "summary.json")
    if graph is None:
        from fedsim import config
        from fedsim.topology import build
        source = run_dir / "config.yaml"
        conf = config.from_dict(config.read_yaml(source), str(source))
        graph = build(conf.topology.kind, conf.topology.n_peers, conf.seed, conf.topology.args)
    n = graph.number_of_nodes()
    byzantine = world.byzantine_ids if world is not None else _peer_ids(summary, ("byzantine_ids",), n, run_dir)
    curious = world.curious_ids if world is not None else _peer_ids(summary, ("privacy", "curious_ids"), n, run_dir)
    privacy_pt = run_dir / "privacy.pt"
    if privacy_pt.exists():
        read_privacy_record(privacy_pt)
    plots = run_dir / "plots"
    try:
        plots.mkdir(exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"{plots}: cannot create the plots directory: "
                          f"{'a file of that name exists' if plots.exists() else exc.strerror}") from None
    written = []
    accuracy_plot(rows, plots / "accuracy.png", str(summary.get("name", run_dir.name)))
    written.append(plots / "accuracy.png")
    topology_plot(graph, byzantine, curious, plots / "topology.png")
    written.append(plots / "topology.png")
    if rows and all(isinstance(r.get("sim_time_s"), (int, float)) and isinstance(r.get("online_peers"), int)
                    for r in rows):
        written += time_plots(rows, plots, str(summary.get("name", run_dir.name)))
    if privacy_pt.exists():
        from fedsim.privacy import reconstructions_plot
        reconstructions_plot(privacy_pt, plots / "reconstructions.png")
        written.append(plots / "reconstructions.png")
    if (run_dir / "peers.csv").exists():
        written += peer_figures(run_dir, graph, byzantine, str(summary.get("name", run_dir.name)))
    return written


# ---------------------------------------------------------------------------
# figures of a study (fedsim sweep, fedsim compare) and of per-peer results
# Every study figure is written as PNG and PDF and carries a caption line naming its scenario.

ACCURACY_LABEL = "test accuracy (fraction of global test set)"


def _save(fig, stem: Path, caption: str) -> list[Path]:
    import textwrap
    width, height = fig.get_size_inches()
    lines = textwrap.wrap(caption, int(width * 15))
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=7, ha="left", va="bottom", color="0.25")
    fig.tight_layout(rect=(0, (0.08 + 0.13 * len(lines)) / height, 1, 1))
    paths = [Path(f"{stem}.png"), Path(f"{stem}.pdf")]
    for path in paths:
        fig.savefig(path)
    plt.close(fig)
    return paths


def heatmap(values, texts, row_labels, col_labels, row_title, col_title, stem: Path, title: str,
            caption: str) -> list[Path]:
    """Final accuracy of each cell (rows x columns), the value printed in each square."""
    import numpy as np
    data = np.array(values, dtype=float)
    n_rows, n_cols = data.shape
    fig, ax = plt.subplots(figsize=(max(6.0, 3.2 + 1.25 * n_cols), 2.4 + 0.5 * n_rows), dpi=120)
    image = ax.imshow(np.ma.masked_invalid(data), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for i in range(n_rows):
        for j in range(n_cols):
            if texts[i][j]:
                dark = not np.isnan(data[i, j]) and data[i, j] < 0.6
                ax.text(j, i, texts[i][j], ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
    ax.set_xticks(range(n_cols), col_labels, rotation=30 if n_cols > 3 else 0, ha="right" if n_cols > 3 else "center")
    ax.set_yticks(range(n_rows), row_labels)
    ax.set_xlabel(col_title)
    ax.set_ylabel(row_title)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="final test accuracy (fraction)")
    return _save(fig, stem, caption)


def curves(series, stem: Path, title: str, caption: str, band: str = "± 1 std over seeds",
           legend_title: str = "") -> list[Path]:
    """``series``: ``(label, rounds, mean, spread)`` per line; the band is mean ± spread."""
    import numpy as np
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for label, rounds, mean, spread in series:
        mean, spread = np.asarray(mean, dtype=float), np.asarray(spread, dtype=float)
        (line,) = ax.plot(rounds, mean, lw=1.5, label=label)
        if spread.any():
            ax.fill_between(rounds, mean - spread, mean + spread, color=line.get_color(), alpha=0.15, lw=0)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("round (communication rounds)")
    ax.set_ylabel(ACCURACY_LABEL)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(f"{title} (lines: mean; bands: {band})" if band else title, fontsize=10)
    ax.legend(fontsize=6 if len(series) > 8 else 8, loc="center left", bbox_to_anchor=(1.01, 0.5),
              ncol=1 + len(series) // 24, title=legend_title, title_fontsize=7)
    return _save(fig, stem, caption)


def tradeoff_plot(series, stem: Path, title: str, caption: str, xlabel: str, ylabel: str) -> list[Path]:
    """A cost-quality curve: ``series`` is ``(label, x, mean, std)`` per line (x ascending,
    drawn on a log axis), each point with its ± std error bar."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for label, x, mean, std in series:
        ax.errorbar(x, mean, yerr=std, marker="o", ms=4, lw=1.5, capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, stem, caption)


def fraction_plot(series, stem: Path, title: str, caption: str, legend_title: str = "") -> list[Path]:
    """``series``: ``(label, fractions, mean, ci_low, ci_high)``: final accuracy against the
    attacker fraction, the band the 95 % confidence interval over seeds."""
    import numpy as np
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for label, x, mean, low, high in series:
        (line,) = ax.plot(x, mean, "o-", lw=1.5, ms=4, label=label)
        low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
        if not np.isnan(low).all():
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15, lw=0)
    ax.set_xlabel("Byzantine fraction of peers (adversary.fraction)")
    ax.set_ylabel(f"final {ACCURACY_LABEL}")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), title=legend_title, title_fontsize=7)
    return _save(fig, stem, caption)


def infoplane_plot(rows: list[dict], path: Path, title: str = "") -> None:
    """The information plane (Shwartz-Ziv & Tishby 2017, Fig. 2): each saved peer's
    ``(I(X;T), I(T;Y))`` over rounds, a line per peer, points coloured by round; the
    dashed line is ``H(Y)``, the most ``I(T;Y)`` can be."""
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    rounds = [r["round"] for r in rows]
    for peer in sorted({r["peer"] for r in rows}):
        mine = sorted((r for r in rows if r["peer"] == peer), key=lambda r: r["round"])
        ax.plot([r["I_XT"] for r in mine], [r["I_TY"] for r in mine], color="0.6", lw=0.8, zorder=1)
    points = ax.scatter([r["I_XT"] for r in rows], [r["I_TY"] for r in rows], c=rounds, cmap="viridis",
                        s=14, zorder=2)
    if rows:
        ax.axhline(rows[0]["H_Y"], ls="--", color="k", lw=0.8, label="H(Y)")
        ax.legend(loc="lower right")
    fig.colorbar(points, ax=ax, label="round")
    ax.set_xlabel("I(X;T) (bits)")
    ax.set_ylabel("I(T;Y) (bits)")
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def hops_plot(hops, accuracy, path: Path, title: str = "") -> None:
    """Each honest peer's final accuracy against its hop distance to the nearest Byzantine
    peer (small horizontal jitter), with the mean per distance."""
    import numpy as np
    hops, accuracy = np.asarray(hops, dtype=float), np.asarray(accuracy, dtype=float)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(hops))
    ax.scatter(hops + jitter, accuracy, s=12, alpha=0.6, label="honest peer")
    distances = np.unique(hops)
    ax.plot(distances, [accuracy[hops == d].mean() for d in distances], "k-o", lw=1.5, ms=4, label="mean")
    ax.set_xticks(distances)
    ax.set_xlabel("hops to nearest Byzantine peer (round-1 graph)")
    ax.set_ylabel(f"final {ACCURACY_LABEL}")
    _finish_accuracy_axes(fig, ax, title, path)


def topology_accuracy_plot(graph: nx.Graph, accuracy: dict, byzantine, path: Path, seed: int = 0,
                           title: str = "") -> None:
    """The round-1 graph, honest peers coloured by final accuracy (scale: their range),
    Byzantine peers red crosses."""
    n = graph.number_of_nodes()
    fig, ax = plt.subplots(figsize=(6.5, 6), dpi=120)
    pos = nx.spring_layout(graph, seed=seed) if n <= 2000 else nx.random_layout(graph, seed=seed)
    size = max(4, 300 / max(1, n ** 0.5))
    if graph.number_of_edges() <= 50000:
        nx.draw_networkx_edges(graph, pos, ax=ax, alpha=0.2, width=0.5)
    honest = [p for p in graph.nodes() if p in accuracy]
    # the colour scale spans the peers' accuracies, so that small differences show
    low, high = min(accuracy.values()), max(accuracy.values())
    pad = max(0.005, (high - low) * 0.05)
    nodes = nx.draw_networkx_nodes(graph, pos, nodelist=honest, ax=ax, node_size=size, cmap="viridis",
                                   node_color=[accuracy[p] for p in honest], vmin=low - pad, vmax=high + pad)
    byz = [p for p in graph.nodes() if p in set(byzantine)]
    if byz:
        nx.draw_networkx_nodes(graph, pos, nodelist=byz, ax=ax, node_size=size, node_color="tab:red",
                               node_shape="X", label="Byzantine")
        ax.legend(loc="upper right")
    if n <= 60:
        nx.draw_networkx_labels(graph, pos, ax=ax, font_size=7)
    fig.colorbar(nodes, ax=ax, label=f"final {ACCURACY_LABEL}", shrink=0.8)
    ax.set_title(title)
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def peer_figures(run_dir: Path, graph: nx.Graph, byzantine, title: str) -> list[Path]:
    """From peers.csv: accuracy against hops to the nearest attacker (when there is one)
    and the topology coloured by final accuracy."""
    import csv
    from fedsim.results import RunDirError
    try:
        with open(run_dir / "peers.csv", newline="") as fh:
            rows = [(int(r["round"]), int(r["peer"]), float(r["accuracy"]),
                     None if r["hops_to_byzantine"] == "" else int(r["hops_to_byzantine"]))
                    for r in csv.DictReader(fh)]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{run_dir / 'peers.csv'}: not a per-peer table ({type(exc).__name__}: {exc})") from None
    if not rows:
        return []
    last = max(r[0] for r in rows)
    final = [r for r in rows if r[0] == last]
    written = []
    reachable = [r for r in final if r[3] is not None]
    if reachable:
        hops_plot([r[3] for r in reachable], [r[2] for r in reachable],
                  run_dir / "plots" / "accuracy_vs_hops.png", f"{title}, round {last}")
        written.append(run_dir / "plots" / "accuracy_vs_hops.png")
    topology_accuracy_plot(graph, {r[1]: r[2] for r in final if r[1] in graph}, byzantine,
                           run_dir / "plots" / "topology_accuracy.png", title=f"{title}, round {last}")
    written.append(run_dir / "plots" / "topology_accuracy.png")
    return written


def _read_summary(path: Path) -> dict:
    """summary.json as a mapping ({} when the run has none yet: it was interrupted)."""
    from fedsim.results import RunDirError
    if not path.exists():
        return {}
    try:
        summary = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path}: cannot read the summary ({exc.__class__.__name__})") from None
    if not isinstance(summary, dict):
        raise RunDirError(f"{path}: the summary must be a JSON object")
    return summary


def _peer_ids(summary: dict, keys: tuple, n_peers: int, run_dir: Path) -> list:
    """The peer ids stored under ``summary[keys[0]][keys[1]]...`` ([] when absent)."""
    from fedsim.results import RunDirError
    value = summary
    for key in keys:
        value = value.get(key, {}) if isinstance(value, dict) else None
    if value == {}:
        return []
    if not isinstance(value, list) or not all(isinstance(i, int) and 0 <= i < n_peers for i in value):
        raise RunDirError(f"{run_dir / 'summary.json'}: {'.'.join(keys)}: must be a list of peer ids "
                          f"in 0..{n_peers - 1}")
    return value
