"""Curious peers: what they record during a run, and the inversion attacks scored after it.

A curious peer behaves honestly. At each round of ``privacy.rounds`` it keeps the head
each of its victims (up to ``privacy.victims`` honest neighbours, chosen by a keyed
draw) sent it. After the run, the inversion attack rebuilds each victim's training
samples of that round from the update, and the reconstruction is scored against the
samples the victim really trained on (PSNR, SSIM, label accuracy, feature cosine).

What the attacker knows of the victim's starting head: in round 1 the common initial
head (exact: every peer starts from it). In a later round r it cannot know the
victim's head (the victim merged what *its* neighbours sent in round r-1), so it uses
its best estimate: **its own head at the start of round r** (the curious peer's merge
of round r-1, which is close to its neighbourhood's consensus). The summary reports,
for every victim, the relative error of that estimate,
``||estimate - true start|| / ||true update||``, so later rounds can be compared.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from fedsim import rng
from fedsim.api import ArtifactCache, VictimUpdate
from fedsim.engine.peer_group import batch_positions
from fedsim.models.features import cache_dir, one_thread
from fedsim.plugins import Plugins
from fedsim.privacy_metrics import score_reconstruction
from fedsim.world import World
from fedsim.registry import create

log = logging.getLogger("fedsim")


def choose_victims(world: World, graph, curious: int, round_: int, count: int) -> list[int]:
    """Up to ``count`` honest, non-curious neighbours of ``curious``, in a keyed random order."""
    excluded = set(world.byzantine_ids) | set(world.curious_ids)
    candidates = np.array(sorted(int(j) for j in graph.adj[curious] if int(j) not in excluded), dtype=np.int64)
    if len(candidates) == 0:
        return []
    order = np.argsort(rng.uniform(world.seed, [curious], round_, "victims", len(candidates))[0], kind="stable")
    return [int(v) for v in candidates[order[:count]]]


class PrivacyRecorder:
    def __init__(self, world: World):
        self.world = world
        self.config = world.scenario.privacy
        self.rounds = set(self.config.rounds)
        self.records: list[dict] = []
        self.start_estimates: dict = {}   # (curious, round) -> its own head at the round's start
        self.true_starts: dict = {}       # (victim, round) -> the victim's head at the round's start
        self.defense = Plugins.of(world).privacy

    def record(self, round_: int, graph, sent, backend) -> None:
        w = self.world
        if round_ in self.rounds:
            attacked = set()
            for c in w.curious_ids:
                victims = choose_victims(w, graph, c, round_, self.config.victims)
                if self.config.distinct_victims:  # each victim once: the first curious peer's record
                    victims = [v for v in victims if v not in attacked]
                attacked.update(victims)
                if not victims:
                    continue
                heads = backend.sent_heads(sent, victims)
                for v, head in zip(victims, heads):
                    estimate = w.init_head if round_ == 1 else self.start_estimates.get((c, round_), w.init_head)
                    true_start = w.init_head if round_ == 1 else self.true_starts.get((v, round_), w.init_head)
                    self.records.append({"curious": c, "victim": v, "round": round_, "end_head": head.clone(),
                                         "start_estimate": estimate.clone(), "true_start": true_start.clone()})
        if round_ + 1 in self.rounds:
            heads = backend.heads()
            for c in w.curious_ids:
                self.start_estimates[(c, round_ + 1)] = heads[c].clone()
                for v in graph.adj[c]:
                    self.true_starts[(int(v), round_ + 1)] = heads[int(v)].clone()

    def state_dict(self) -> dict:
        return {"records": self.records, "start_estimates": self.start_estimates, "true_starts": self.true_starts}

    def load_state_dict(self, state) -> None:
        if state:
            self.records = state["records"]
            self.start_estimates = state["start_estimates"]
            self.true_starts = state["true_starts"]

    # ------------------------------------------------------------------ scoring
    def finish(self, run_dir) -> dict:
        w, p = self.world, self.config
        t = w.scenario.training
        attack = create("inversions", p.attack.name, **p.attack.args)
        # What the attack learns from the public split (the generative attacks' image
        # generator), cached under the key of the public split's features.
        cache = ArtifactCache(cache_dir(), {"features": w.info["feature_key"], "shape": list(w.image_shape)})
        with one_thread():
            generator = attack.prepare(w.public_images, cache, w.seed)
        per_victim, kept = [], []
        for k, rec in enumerate(self.records):
            transform = None
            if p.adaptive and self.defense is not None:
                # The sender's defense as the adaptive attacker replays it (PrivacyDefense.replay).
                transform = self.defense.replay(rng.generator(w.seed, rec["victim"], rec["round"], "adaptive"))
            update = VictimUpdate(start_head=rec["start_estimate"], end_head=rec["end_head"],
                                  local_steps=t.local_steps, batch_size=t.batch_size, lr=t.lr,
                                  optimizer=t.optimizer, loss=w.scenario.model.head, n_classes=w.n_classes,
                                  image_shape=w.image_shape, transform=transform, weight_decay=t.weight_decay)
            pos = batch_positions(w, np.array([rec["victim"]]), rec["round"])[0]
            rows = w.peers.train_rows[pos]
            true_images = w.train_images[rows].reshape(t.local_steps, t.batch_size, *w.image_shape)
            true_labels = w.peers.train_labels[pos].reshape(t.local_steps, t.batch_size)
            true_features = w.features[rows].reshape(t.local_steps, t.batch_size, -1)
            g = rng.generator(w.seed, rec["curious"], rec["round"], f"inversion-{rec['victim']}")
            with one_thread():  # the attack's convolution gradients split reductions across threads
                reconstruction = attack.reconstruct(update, w.backbone, generator, g)
                scores = score_reconstruction(reconstruction, true_images, true_labels, true_features)
            true_delta = (rec["end_head"] - rec["true_start"]).norm()
            start_error = float((rec["start_estimate"] - rec["true_start"]).norm() / true_delta.clamp(min=1e-12))
            per_victim.append({"curious": rec["curious"], "victim": rec["victim"], "round": rec["round"],
                               "start_head_error": start_error,
                               **{k2: v for k2, v in scores.items() if k2 not in ("psnr", "ssim", "pairs")}})
            if k < 8:
                kept.append({"true": true_images.reshape(-1, *w.image_shape)[:64].clone(),
                             "rebuilt": reconstruction.images.detach().reshape(-1, *w.image_shape)[:64].clone(),
                             "pairs": scores["pairs"][:8], "victim": rec["victim"], "round": rec["round"]})
        torch.save(kept, Path(run_dir.path) / "privacy.pt")
        mean = lambda key: float(np.mean([v[key] for v in per_victim])) if per_victim else float("nan")  # noqa: E731
        summary = {
            "attack": p.attack.name, "attack_args": dict(p.attack.args), "curious_ids": w.curious_ids,
            "n_victims": len(per_victim), "rounds": sorted(self.rounds), "adaptive": p.adaptive,
            "defense": p.defense.name,
            "defense_params": self.defense.describe() if self.defense is not None else dict(p.defense.args),
            "start_head": "common initial head in round 1; later rounds: the curious peer's own head",
            # Differential privacy of every honest peer's data over the run (DPGaussian.accounting).
            **({"epsilon": self.defense.accounting(w.scenario.rounds)} if hasattr(self.defense, "accounting") else {}),
            "psnr_mean": mean("psnr_mean"), "ssim_mean": mean("ssim_mean"),
            "label_accuracy": mean("label_accuracy"), "feature_cosine_mean": mean("feature_cosine_mean"),
            "per_victim": per_victim,
        }
        log.info("privacy: %s on %d victims: PSNR %.2f, SSIM %.3f, label accuracy %.3f", p.attack.name,
                 len(per_victim), summary["psnr_mean"], summary["ssim_mean"], summary["label_accuracy"])
        return summary


def reconstructions_plot(privacy_pt, path) -> None:
    """Rows of true images (top) and their matched reconstructions (below), per victim."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from fedsim.results import read_privacy_record
    kept = read_privacy_record(privacy_pt)
    if not kept:
        return
    cols = max(len(k["pairs"]) for k in kept)
    fig, axes = plt.subplots(2 * len(kept), cols, figsize=(1.2 * cols, 2.6 * len(kept)), squeeze=False)
    for row, item in enumerate(kept):
        for col in range(cols):
            for sub, (title, images, index) in enumerate((("true", item["true"], 1), ("rebuilt", item["rebuilt"], 0))):
                ax = axes[2 * row + sub][col]
                ax.set_axis_off()
                if col < len(item["pairs"]):
                    pair = item["pairs"][col]
                    idx = pair[index]
                    if idx < images.shape[0]:
                        ax.imshow(images[idx].reshape(images.shape[-2], images.shape[-1]).clamp(0, 1).numpy(),
                                  cmap="gray", vmin=0, vmax=1)
                if col == 0:
                    ax.set_title(f"victim {item['victim']} r{item['round']} {title}", fontsize=6, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
