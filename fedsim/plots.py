"""Figures of a run: accuracy over rounds and the topology (PNG, Agg backend)."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402


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
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


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
    run_dir = Path(run_dir)
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if l.strip()]
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    written = []
    accuracy_plot(rows, plots / "accuracy.png", summary.get("name", run_dir.name))
    written.append(plots / "accuracy.png")
    if graph is None:
        import yaml
        from fedsim.topology import build
        conf = yaml.safe_load((run_dir / "config.yaml").read_text())
        topo = conf["topology"]
        graph = build(topo["kind"], topo["n_peers"], conf["seed"], topo.get("args") or {})
    byzantine = world.byzantine_ids if world is not None else summary.get("byzantine_ids", [])
    curious = world.curious_ids if world is not None else summary.get("privacy", {}).get("curious_ids", [])
    topology_plot(graph, byzantine, curious, plots / "topology.png")
    written.append(plots / "topology.png")
    if (run_dir / "privacy.pt").exists():
        from fedsim.privacy import reconstructions_plot
        reconstructions_plot(run_dir / "privacy.pt", plots / "reconstructions.png")
        written.append(plots / "reconstructions.png")
    return written
