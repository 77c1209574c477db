"""PeerGroup: the state of many peers stacked in tensors, trained, merged and
evaluated in batched operations.

A group holds heads ``[n, C, D+1]`` (and Adam's moments) for the peers in
``peer_ids``; the plugins it runs (head, defense, privacy transform) are given to it
by its host (``fedsim.engine.host``). Backends differ only in where groups live and
how the heads each group sends reach the others.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from fedsim import rng
from fedsim.engine import exchange
from fedsim.api import PeerContext
from fedsim import functional as F
from fedsim.world import World
from fedsim.models.features import one_thread
from fedsim.models.heads import head_logits, log_partition, with_bias_column

# Upper bound on the padded received tensor of one aggregation chunk.
_CHUNK_BYTES = 256 * 2**20
_EVAL_CHUNK_BYTES = 128 * 2**20
# Batch features of one training chunk (small enough to stay in cache over the steps).
_TRAIN_CHUNK_BYTES = 16 * 2**20


def batch_positions(world: World, peer_ids: np.ndarray, round_: int,
                    draw_keys: Optional[np.ndarray] = None) -> torch.Tensor:
    """``[n, local_steps * batch_size]`` positions into ``world.peers.train_rows`` of the
    samples each peer trains on in ``round_`` (uniform with replacement, keyed draws).
    ``draw_keys [n]``, when given, replaces ``round_`` as the key of each peer's draw.
    Under the ``drift`` partition a peer draws from its samples of the current phase's
    classes (``fedsim.data.partition.drift_classes``), all of them if it has none."""
    t = world.scenario.training
    ids = torch.as_tensor(np.asarray(peer_ids, dtype=np.int64))
    counts = world.peers.train_count()[ids]
    starts = world.peers.train_offsets[:-1][ids]
    count = t.local_steps * t.batch_size
    if draw_keys is not None:
        draw_keys = np.asarray(draw_keys, dtype=np.int64)
    u = torch.as_tensor(rng.uniform(world.seed, peer_ids, round_ if draw_keys is None else draw_keys,
                                    "batch", count))
    order = None
    if world.scenario.data.partition.kind == "drift":
        keys = np.full(len(ids), round_, dtype=np.int64) if draw_keys is None else draw_keys
        order, starts, counts = _phase_samples(world, ids, keys)
    pos = starts[:, None] + torch.floor(u * counts[:, None].double()).long()
    pos = torch.minimum(pos, (starts + (counts - 1).clamp(min=0))[:, None])
    if order is None or len(order) == 0:
        return pos
    return order[pos.clamp(max=len(order) - 1)]  # the clamp only touches peers without samples


def _phase_samples(world: World, ids: torch.Tensor, keys: np.ndarray):
    """Peers ``ids``' samples of the classes of their current drift phase (the phase of
    ``keys``, each peer's round): ``(order, starts, counts)``, peer ``i`` drawing from
    ``order[starts[i]:starts[i] + counts[i]]``, positions into ``world.peers.train_rows``."""
    from fedsim.data.partition import drift_classes, drift_phase
    part = world.scenario.data.partition
    counts = world.peers.train_count()[ids]
    offsets = world.peers.train_offsets[:-1][ids]
    owner = torch.repeat_interleave(torch.arange(len(ids)), counts)
    first = torch.cumsum(counts, 0) - counts
    flat = offsets[owner] + torch.arange(int(counts.sum())) - first[owner]
    phase = drift_phase(keys, part.drift_every, part.phases)
    classes = torch.as_tensor(drift_classes(ids.numpy(), phase, world.n_classes, part.classes_per_peer,
                                            part.stagger))
    in_phase = (world.peers.train_labels[flat][:, None] == classes[owner]).any(dim=1)
    current = torch.zeros(len(ids), dtype=torch.long).index_add_(0, owner, in_phase.long())
    # A peer without samples of its phase's classes draws from all of its samples.
    in_phase |= (current == 0)[owner]
    order = flat[torch.sort(owner * 2 + (~in_phase).long(), stable=True).indices]
    return order, first, torch.where(current > 0, current, counts)


def _gathered_steps(inputs: torch.Tensor, rows: torch.Tensor, shape: tuple) -> list:
    """``inputs[rows[s]]`` viewed as ``shape + (P,)`` for every step ``s``, gathered into
    one buffer in which each step's block starts on a 64-byte boundary: a fresh tensor
    does, and MKL picks its kernels by alignment, so a block at another offset would
    move the last bits of the matmuls."""
    steps, count = rows.shape
    P = inputs.shape[1]
    size = count * P
    stride = -(-size * inputs.element_size() // 64) * 64 // inputs.element_size()
    buffer = torch.empty(steps * stride, dtype=inputs.dtype, device=inputs.device)
    blocks = []
    for s in range(steps):
        block = buffer[s * stride:s * stride + size].view(count, P)
        torch.index_select(inputs, 0, rows[s], out=block)
        blocks.append(block.view(*shape, P))
    return blocks


def _step_count(steps: torch.Tensor):
    """Adam's step number for ``F.adam_step``: one int when every peer has made the
    same number of steps (the synchronous path, bit for bit as a scalar), else the
    per-peer counts."""
    first = int(steps[0]) if len(steps) else 0
    return first if bool((steps == first).all()) else steps


class PeerGroup:
    """Peers ``peer_ids`` of a run (sorted global ids), run with ``plugins``
    (``fedsim.engine.host.Plugins``)."""

    def __init__(self, world: World, peer_ids, plugins):
        s = world.scenario
        self.world = world
        self.ids = np.asarray(sorted(int(i) for i in peer_ids), dtype=np.int64)
        self.ids_t = torch.as_tensor(self.ids)
        n = len(self.ids)
        byz = set(world.byzantine_ids)
        self.is_byzantine = torch.tensor([int(i) in byz for i in self.ids], dtype=torch.bool)
        # backend.device: heads, optimizer state, the training buffers and evaluation live
        # there; what leaves the group (sent heads, states, results) and the defenses' merge
        # run on the CPU.
        self.device = torch.device(s.backend.device)
        self.heads = world.init_head.unsqueeze(0).repeat(n, 1, 1).contiguous().to(self.device)
        self.previous = self.heads.clone()
        self.head_fn = plugins.head
        self.defense = plugins.defense
        self.fallback = plugins.fallback
        self.privacy = plugins.privacy
        self.training = s.training
        self.adam_m = torch.zeros_like(self.heads) if s.training.optimizer == "adam" else None
        self.adam_v = torch.zeros_like(self.heads) if s.training.optimizer == "adam" else None
        self.adam_steps = torch.zeros(n, dtype=torch.int64)
        self.defense_state: list[dict] = [{} for _ in range(n)]
        # FedRS (Li & Zhan, KDD 2021): logits of classes a peer does not hold are scaled
        # by missing_class_scale during local training (1 = plain softmax).
        self.logit_scale = None
        if s.training.missing_class_scale != 1.0:
            scale = torch.full((n, world.n_classes), float(s.training.missing_class_scale))
            for r, peer in enumerate(self.ids):
                held = world.peers.classes[int(peer)]
                scale[r, held] = 1.0
            self.logit_scale = scale.to(self.device)
        # Bristle's reference (Node.kt updateCW, lines 191-195): training moves every row,
        # but the head a peer sends keeps the pre-training rows of classes it lacks.
        self.held_rows = None
        if s.training.missing_class_rows == "keep":
            self.held_rows = torch.zeros(n, world.n_classes, 1, dtype=torch.bool)
            for r, peer in enumerate(self.ids):
                self.held_rows[r, world.peers.classes[int(peer)]] = True
        self.class_membership = exchange.class_membership(world) if self.defense.needs_context else None
        self._inputs_cache: Optional[torch.Tensor] = None

    # ------------------------------------------------------------------ training
    def train(self, round_: int, rows: Optional[torch.Tensor] = None,
              draw_keys: Optional[np.ndarray] = None) -> torch.Tensor:
        """``local_steps`` mini-batch steps on every peer's own features, all peers at
        once; returns the heads to send (after any sender-side privacy transform).

        ``rows`` (a sorted LongTensor of local row indices; None = every peer) trains only
        those peers: the others keep their head, previous head and optimizer state, and
        only the trained rows' sent heads are returned. ``draw_keys`` (one int per trained
        row) replace ``round_`` as the key of each row's batch draw and privacy noise.

        Peers train in chunks (``_TRAIN_CHUNK_BYTES`` of features each, so the buffer
        stays in cache across the steps): a chunk's batch features, with their column of
        ones, are gathered once into one contiguous buffer ``[steps, peers, B, D+1]``;
        each step is then two batched matmuls and the loss's logit gradient
        (``Head.grad``), updated in place. A peer's numbers do not depend on its chunk.

        A subset (asynchronous gossip, sampled participation) trains with one torch
        thread: a batched matmul over few peers is split inside each product when there
        are more threads than peers, so its last bits would depend on the machine's
        thread count (and differ between a run and its resumption in another process);
        with one thread they do not. The full-group path is unchanged.
        """
        if rows is None:
            return self._train(round_, rows, draw_keys)
        with one_thread():
            return self._train(round_, rows, draw_keys)

    def _train(self, round_: int, rows: Optional[torch.Tensor], draw_keys: Optional[np.ndarray]) -> torch.Tensor:
        w, t = self.world, self.training
        ids = self.ids if rows is None else self.ids[rows.numpy()]
        previous = self.heads.clone() if rows is None else self.heads[rows]
        pos = batch_positions(w, ids, round_, draw_keys)
        inputs = self._inputs()
        P = inputs.shape[1]
        chunk = max(1, _TRAIN_CHUNK_BYTES // (pos.shape[1] * P * inputs.element_size()))
        for a in range(0, len(ids), chunk):
            b = min(len(ids), a + chunk)
            self._train_chunk(slice(a, b) if rows is None else rows[a:b], pos[a:b], inputs)
        heads = self.heads if rows is None else self.heads[rows]
        if rows is None:
            self.previous = previous
        else:
            self.previous[rows] = previous
        keys = np.full(len(ids), round_, dtype=np.int64) if draw_keys is None else np.asarray(draw_keys)
        heads, previous = heads.cpu(), previous.cpu()
        sent = self.outgoing(ids, heads, previous, keys)
        held_rows = self._select(self.held_rows, rows)
        return sent if held_rows is None else torch.where(held_rows, sent, previous)

    def _inputs(self) -> torch.Tensor:
        """Every feature row with its column of ones, ``[R, D+1]`` (built once)."""
        if self._inputs_cache is None:
            self._inputs_cache = with_bias_column(self.world.features).contiguous().to(self.device)
        return self._inputs_cache

    def _train_chunk(self, sel, pos: torch.Tensor, inputs: torch.Tensor) -> None:
        """The local steps of the peers at rows ``sel`` (a slice, or sorted row indices),
        their samples at ``pos [n, steps * B]`` (``batch_positions``)."""
        w, t = self.world, self.training
        n, S, B = pos.shape[0], t.local_steps, t.batch_size
        step_major = pos.view(n, S, B).transpose(0, 1).reshape(-1)
        has_rows = w.peers.train_rows.numel() > 0
        sample_rows = w.peers.train_rows[step_major] if has_rows else torch.zeros_like(step_major)
        labels = (w.peers.train_labels[step_major] if has_rows else torch.zeros_like(step_major)).view(S, n, B)
        sample_rows, labels = sample_rows.to(self.device), labels.to(self.device)
        x = _gathered_steps(inputs, sample_rows.view(S, n * B), (n, B))
        heads = self.heads[sel]
        counts = w.peers.train_count()[torch.as_tensor(self.ids[sel])]
        active = None if bool((counts > 0).all()) else (counts > 0).to(heads)[:, None, None]
        logit_scale = None if self.logit_scale is None else self.logit_scale[sel]
        class_major = t.kernel == "fast"
        # The fast kernel's plain SGD step is one fused heads -= lr/B dz @ x (Head.sgd_step_).
        fused = class_major and t.optimizer == "sgd" and not (t.migu_quantile or t.weight_decay or active is not None)
        for step in range(S):
            if fused:
                self.head_fn.sgd_step_(heads, x[step], labels[step], t.lr, logit_scale, t.z_loss)
                continue
            logits, grad = self.head_fn.grad(heads, x[step], labels[step], logit_scale, t.z_loss, class_major)
            if t.migu_quantile:
                grad *= F.migu_mask(logits, t.migu_quantile).unsqueeze(-1)
            if t.weight_decay:
                grad = grad + t.weight_decay * heads
            update = self._step(grad, sel)
            if active is not None:  # peers without samples do not move
                update = update * active
            heads -= update
        self.heads[sel] = heads

    @staticmethod
    def _select(per_peer: Optional[torch.Tensor], rows: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The ``rows`` of a per-peer tensor (all of it when ``rows`` is None; None stays None)."""
        return per_peer if per_peer is None or rows is None else per_peer[rows]

    def _step(self, grad: torch.Tensor, sel) -> torch.Tensor:
        """The update of the peers at rows ``sel`` for ``grad`` (SGD: in place in ``grad``)."""
        t = self.training
        if t.optimizer == "sgd":
            return grad.mul_(t.lr)
        # Adam (Kingma & Ba 2015), beta1 0.9, beta2 0.999, eps 1e-8; moments and step
        # counts persist across rounds, per peer.
        self.adam_steps[sel] += 1
        update, m, v = F.adam_step(grad, self.adam_m[sel], self.adam_v[sel], _step_count(self.adam_steps[sel]), t.lr)
        self.adam_m[sel], self.adam_v[sel] = m, v
        return update

    def outgoing(self, ids: np.ndarray, heads: torch.Tensor, previous: torch.Tensor,
                 keys: np.ndarray) -> torch.Tensor:
        """The heads peers ``ids`` send after training ``previous -> heads``: the
        sender-side privacy transform applied to each honest peer's update, its noise
        keyed by ``keys`` (the round of each peer's draw)."""
        sent = heads.clone()
        if self.privacy is None:
            return sent
        byz = set(self.world.byzantine_ids)
        for r, peer in enumerate(ids):
            if int(peer) in byz:
                continue
            g = rng.generator(self.world.seed, int(peer), int(keys[r]), "privacy")
            sent[r] = previous[r] + self.privacy.apply(heads[r] - previous[r], g)
        return sent

    def byzantine_heads(self) -> tuple[list, torch.Tensor, torch.Tensor]:
        rows = torch.nonzero(self.is_byzantine).flatten()
        return [int(self.ids[r]) for r in rows], self.heads[rows].cpu(), self.previous[rows].cpu()

    # --------------------------------------------------------------- aggregation
    def aggregate(self, round_: int, sent_all: torch.Tensor, neighbours: np.ndarray,
                  claimed: torch.Tensor, crafted: dict, honest_bytes: int,
                  degrees: Optional[torch.Tensor] = None, rows: Optional[torch.Tensor] = None) -> dict:
        """Merge what every peer of the group received.

        ``sent_all [N + 1, C, P]``: the head each peer sent this round (rows of
        Byzantine senders unused; the last row is padding); ``neighbours [n_group, k]``:
        each peer's senders, sorted, padded with -1; ``claimed [N + 1]``: class counts
        senders state; ``crafted {receiver: [(sender, object), ...]}``: what Byzantine
        senders sent to this group's peers; ``honest_bytes``: one honest message's size;
        ``degrees [N]``: every peer's degree this round (``exchange.degrees``), for the
        defenses' ``PeerContext.sender_degrees``. ``rows`` (a sorted LongTensor of local
        rows; None = every peer): only these peers receive and merge (``neighbours`` then
        has one row per entry of ``rows``), and one to which nothing arrived keeps its head
        (the simulated network's lost messages and absent peers, ``fedsim.network``).
        Returns the counters of ``exchange.deliver`` summed over the group.
        """
        w = self.world
        C, P = self.heads.shape[1:]
        stats = {"dropped": 0, "nonfinite": 0, "delivered": 0, "bytes": 0}
        nbr = torch.as_tensor(neighbours)
        k = nbr.shape[1]
        is_byz_sender = torch.zeros(w.n_peers + 1, dtype=torch.bool)
        if w.byzantine_ids:
            is_byz_sender[torch.as_tensor(sorted(set(w.byzantine_ids)))] = True
        chunk = max(1, int(_CHUNK_BYTES // max(1, k * C * P * 4)))
        n_rows = len(self.ids) if rows is None else len(rows)
        new_heads = torch.empty_like(self.heads) if rows is None else self.heads.clone()
        for a in range(0, n_rows, chunk):
            b = min(n_rows, a + chunk)
            idx = torch.arange(a, b) if rows is None else rows[a:b]
            ids_c = nbr[a:b]
            received = sent_all[ids_c.clamp(min=0)]
            mask, counts = exchange.deliver(received, ids_c, self.ids[idx.numpy()], is_byz_sender, crafted,
                                            honest_bytes)
            for key in stats:
                stats[key] += counts[key]
            if rows is not None:
                has = mask.any(dim=1)
                idx, received, mask, ids_c = idx[has], received[has], mask[has], ids_c[has]
            new_heads[idx] = self.merge(round_, idx, received, mask, ids_c, claimed, degrees, is_byz_sender)
        self.heads = new_heads
        return stats

    def merge(self, round_: int, idx: torch.Tensor, received: torch.Tensor, mask: torch.Tensor,
              senders: torch.Tensor, claimed: torch.Tensor, degrees: Optional[torch.Tensor] = None,
              is_byz_sender: Optional[torch.Tensor] = None, ages: Optional[tuple] = None) -> torch.Tensor:
        """The merged heads of local rows ``idx`` (not stored): each row's own head merged
        with ``received [n, k, C, P]`` where ``mask [n, k]`` holds a message from
        ``senders [n, k]``, by the defense (Byzantine rows: by the fallback mean).
        ``ages``: ``(seconds [n, k], updates [n, k])`` of each message, for
        ``PeerContext.ages_s`` / ``ages_updates`` (asynchronous gossip)."""
        # The defenses run on the CPU (they build CPU tensors and draw with CPU generators):
        # with backend.device cuda, the heads travel there and back (n x C x (D+1) numbers).
        own = self.heads[idx].cpu()
        honest_rows = torch.nonzero(~self.is_byzantine[idx]).flatten()
        byz_rows = torch.nonzero(self.is_byzantine[idx]).flatten()
        out = torch.empty_like(own)
        if len(byz_rows):  # Byzantine peers are not defended: they just average.
            out[byz_rows] = self.fallback.aggregate_group(own[byz_rows], received[byz_rows], mask[byz_rows])
        if len(honest_rows):
            ctxs = None
            if self.defense.needs_context:
                ctxs = [self.context(round_, int(idx[r]), senders[r], mask[r], claimed, degrees, is_byz_sender,
                                     None if ages is None else (ages[0][r][mask[r]], ages[1][r][mask[r]]))
                        for r in honest_rows]
            # No Byzantine row: the defense gets the chunk itself, not a copy of every row.
            rows = slice(None) if len(byz_rows) == 0 else honest_rows
            out[rows] = self.defense.aggregate_group(own[rows], received[rows], mask[rows], ctxs)
        return out.to(self.device)

    def context(self, round_: int, row: int, senders: torch.Tensor, mask: torch.Tensor, claimed: torch.Tensor,
                degrees: Optional[torch.Tensor] = None, is_byz_sender: Optional[torch.Tensor] = None,
                ages: Optional[tuple] = None) -> PeerContext:
        """What the defense knows of peer ``row`` this round (``fedsim.api.PeerContext``):
        ``senders`` its neighbours (padded with -1), ``mask`` which of them delivered a
        message, ``claimed [N + 1]`` stated class counts, ``degrees [N]`` every peer's
        degree, ``is_byz_sender [N + 1]`` which senders are Byzantine, ``ages`` the
        ``(seconds, updates)`` age of each delivered message (asynchronous gossip)."""
        w = self.world
        peer = int(self.ids[row])
        test_rows, test_labels = w.peers.test_slice(peer)
        train_rows, train_labels = w.peers.train_slice(peer)
        sender_ids = senders[mask]
        return PeerContext(
            peer_id=peer, round=round_, test_features=w.features[test_rows], test_labels=test_labels,
            classes=w.peers.classes[peer], n_classes=w.n_classes,
            rng=rng.generator(w.seed, peer, round_, "defense"), loss=w.scenario.model.head,
            train_features=w.features[train_rows], train_labels=train_labels,
            previous_head=self.previous[row].cpu(), sender_ids=sender_ids,
            claimed_num_classes=claimed[sender_ids], state=self.defense_state[row],
            byzantine_neighbours=int(is_byz_sender[sender_ids].sum()) if is_byz_sender is not None else 0,
            degree=int((senders >= 0).sum()),
            sender_degrees=degrees[sender_ids] if degrees is not None else None,
            sender_class_overlap=exchange.class_overlap(self.class_membership, peer, sender_ids, claimed)
            if self.class_membership is not None else None,
            ages_s=None if ages is None else ages[0], ages_updates=None if ages is None else ages[1],
        )

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, features: torch.Tensor, labels: torch.Tensor,
                 backdoor: Optional[torch.Tensor] = None, target: Optional[int] = None) -> dict:
        """Accuracy, loss and mean ``log Z`` (``log_partition`` of the logits: a
        poisoned or diverging head shows as a large one; Wortsman et al. 2023) of every
        honest peer's head on ``features``; ``byzantine_log_z``: the same for the
        Byzantine peers' own heads; with a backdoor, the share of triggered images
        classified as ``target``."""
        rows = torch.nonzero(~self.is_byzantine).flatten()
        heads = self.heads[rows]
        features, labels = features.to(self.device), labels.to(self.device)
        backdoor = None if backdoor is None else backdoor.to(self.device)
        m, C = features.shape[0], heads.shape[1]
        chunk = max(1, int(_EVAL_CHUNK_BYTES // max(1, m * C * 4)))
        acc, loss, log_z, asr = [], [], [], []
        for a in range(0, len(rows), chunk):
            h = heads[a:a + chunk]
            logits = head_logits(h, features)
            acc.append((self.head_fn.predict(logits) == labels).double().mean(dim=1))
            loss.append(self.head_fn.loss(logits, labels.expand(h.shape[0], -1)).double().mean(dim=1))
            log_z.append(log_partition(logits).double().mean(dim=1))
            if backdoor is not None:
                bl = head_logits(h, backdoor)
                asr.append((self.head_fn.predict(bl) == target).double().mean(dim=1))
        byzantine = self.heads[self.is_byzantine]
        byzantine_log_z = [log_partition(head_logits(byzantine[a:a + chunk], features)).double().mean(dim=1)
                           for a in range(0, len(byzantine), chunk)]
        cat = lambda parts: torch.cat(parts).cpu() if parts else torch.zeros(0, dtype=torch.float64)
        out = {"ids": self.ids[rows.numpy()], "accuracy": cat(acc), "loss": cat(loss), "log_z": cat(log_z),
               "byzantine_log_z": cat(byzantine_log_z)}
        if backdoor is not None:
            out["asr"] = cat(asr)
        return out

    def honest_sum(self) -> tuple[torch.Tensor, int]:
        rows = ~self.is_byzantine
        return self.heads[rows].double().sum(dim=0).cpu(), int(rows.sum())

    def distances_to(self, center: torch.Tensor) -> torch.Tensor:
        rows = ~self.is_byzantine
        return F.distances_to(center.to(self.device), self.heads[rows]).cpu()

    # ------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {"ids": self.ids.copy(), "heads": self.heads.cpu().clone(),
                "adam_m": None if self.adam_m is None else self.adam_m.cpu().clone(),
                "adam_v": None if self.adam_v is None else self.adam_v.cpu().clone(),
                "adam_steps": self.adam_steps.clone(), "defense_state": self.defense_state}

    def load_state_dict(self, state: dict) -> None:
        pos = {int(g): r for r, g in enumerate(state["ids"])}
        rows = torch.as_tensor([pos[int(g)] for g in self.ids])
        self.heads = state["heads"][rows].to(self.device, copy=True)
        if self.adam_m is not None and state.get("adam_m") is not None:
            self.adam_m = state["adam_m"][rows].to(self.device, copy=True)
            self.adam_v = state["adam_v"][rows].to(self.device, copy=True)
        steps = state.get("adam_steps", 0)
        # Checkpoints written before step counts were per peer hold one int for all.
        self.adam_steps = (steps[rows].clone() if torch.is_tensor(steps)
                           else torch.full((len(self.ids),), int(steps), dtype=torch.int64))
        self.defense_state = [state["defense_state"][int(r)] for r in rows]
