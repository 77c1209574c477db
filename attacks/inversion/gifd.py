"""GIFD (:class:`GIFD`) and the l1-ball projection of its feature stages."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from attacks.inversion.base import InversionAttack, Reconstruction, VictimUpdate
from attacks.inversion.gan_latent import _Matcher, best_generated, require_generator, search_latent
from attacks.inversion.generator import prepared_generator
from fedsim.params import Interval, ListOf
from fedsim.registry import register


def project_l1_ball(x: torch.Tensor, center: torch.Tensor, radius, batch_dims: int = 0) -> torch.Tensor:
    """The Euclidean projection of ``x`` onto ``{y : ||y - center||_1 <= radius}``.

    Duchi, Shalev-Shwartz, Singer, Chandra 2008, "Efficient projections onto the l1-ball
    for learning in high dimensions" (ICML), Fig. 1, the exact O(n log n) algorithm: with
    ``v = x - center``, if ``||v||_1 <= r`` return ``x``; else sort ``u = |v|`` descending,
    ``rho = max{j : u_j - (sum_{i<=j} u_i - r) / j > 0}``,
    ``theta = (sum_{i<=rho} u_i - r) / rho`` and return
    ``center + sign(v) * max(|v| - theta, 0)``.

    ``batch_dims`` leading axes index independent vectors (each flattened over the rest);
    ``radius`` is a number or a tensor of shape ``x.shape[:batch_dims]``.
    """
    if x.shape != center.shape:
        raise ValueError(f"x {tuple(x.shape)} and center {tuple(center.shape)} must have the same shape")
    if batch_dims < 0 or batch_dims >= max(x.dim(), 1):
        raise ValueError(f"batch_dims must be in 0..{x.dim() - 1}; got {batch_dims}")
    lead = x.shape[:batch_dims]
    v = (x - center).reshape(*lead, -1) if batch_dims else (x - center).reshape(1, -1)
    r = torch.as_tensor(radius, dtype=x.dtype, device=x.device).expand(lead if batch_dims else (1,))
    r = r.reshape(-1, 1)
    v = v.reshape(-1, v.shape[-1])
    if (r < 0).any():
        raise ValueError(f"radius must be >= 0; got {radius}")
    u = v.abs().sort(dim=-1, descending=True).values
    cssv = u.cumsum(dim=-1) - r
    j = torch.arange(1, u.shape[-1] + 1, dtype=x.dtype, device=x.device)
    rho = ((u - cssv / j) > 0).sum(dim=-1, keepdim=True).clamp_min(1)  # the condition holds for j = 1..rho
    theta = cssv.gather(-1, rho - 1) / rho.to(x.dtype)
    projected = v.sign() * (v.abs() - theta).clamp_min(0)
    inside = v.abs().sum(dim=-1, keepdim=True) <= r
    projected = torch.where(inside, v, projected)
    return center + projected.reshape(x.shape)


@register("inversions", "gifd")
class GIFD(InversionAttack):
    """GIFD: latent search, then search in the generator's intermediate features, within l1 balls.
    Fang, Chen, Wang, Wang, Xia 2023, "GIFD: A Generative Gradient Inversion Method with
    Feature Domain Optimization", ICCV.

    Stage 0 searches the generator's latent space (as :class:`~attacks.inversion.gan_latent.GANLatent`).
    Each later stage ``k = 1 .. K-1`` optimises the *input of generator block k* (an
    intermediate feature map ``h_k``), starting from ``h_k^0`` = block ``k-1`` applied to
    the previous stage's result, with the deviation kept in an l1 ball (Intermediate
    Layer Optimization, Daras et al. 2021)::

        min_{h_k} 1 - cos(T(replay(H0, backbone(G_{k..}(h_k)), labels) - H0), H1 - H0)
        s.t.      ||h_k,i - h_k,i^0||_1 <= r_k   for every sample i,

    by projected Adam (a step, then :func:`project_l1_ball`). Every stage's images are a
    candidate; the one with the smallest matching loss is kept ("best stage chosen by the
    matching loss"), over ``restarts`` independent latent draws. Labels come from the update
    (iDLG / LLG counting).

    Parameters
    ----------
    latent_iterations : int >= 1, default 150
        Adam steps of the latent stage (for CPU speed).
    stage_iterations : int >= 0, default 50
        Adam steps of each feature stage.
    lr : float > 0, default 0.05
        Step size of the latent stage.
    stage_lr : float > 0, default 0.01
        Step size of the feature stages.
    restarts : int >= 1, default 2
        Independent latent draws.
    radii : sequence of float >= 0, default None
        ``r_k`` per stage after the latent one (absolute, as in the paper).
    radius_fraction : float >= 0, default 0.1
        Without ``radii``, every stage uses ``radius_fraction * ||h_k,i^0||_1`` (per
        sample), a scale-free default for generators of any width.
    latent_weight : float >= 0, default 1e-2
        Weight of the latent prior (see :class:`~attacks.inversion.gan_latent.GANLatent`).

    Notes
    -----
    The absolute radii of the paper depend on the generator's width; the relative
    default does not.

    References
    ----------
    .. [1] H. Fang, B. Chen, X. Wang, Z. Wang, S.-T. Xia, "GIFD: a generative gradient
       inversion method with feature domain optimization", ICCV 2023.
    .. [2] G. Daras, J. Dean, A. Jalal, A. G. Dimakis, "Intermediate layer optimization for
       inverse problems using deep generative models", ICML 2021.
    .. [3] J. Duchi, S. Shalev-Shwartz, Y. Singer, T. Chandra, "Efficient projections onto
       the l1-ball for learning in high dimensions", ICML 2008.

    Examples
    --------
    A run needs a generator trained on public images (:mod:`attacks.inversion.generator`);
    the projection each feature stage ends with:

    >>> project_l1_ball(torch.tensor([3.0, 1.0]), torch.zeros(2), 2.0)  # onto ||y||_1 <= 2
    tensor([2., 0.])
    """

    name = "gifd"
    parameters = {"latent_iterations": Interval(int, 1, None), "stage_iterations": Interval(int, 0, None),
                  "lr": Interval(float, 0, None, closed="neither"), "stage_lr": Interval(float, 0, None, closed="neither"), "restarts": Interval(int, 1, None),
                  "radii": [None, ListOf(Interval(float, 0, None))], "radius_fraction": Interval(float, 0, None),
                  "latent_weight": Interval(float, 0, None)}

    def prepare(self, public_images, cache=None, seed=0):
        """The image generator, trained on the public split (or loaded from ``cache``)."""
        return prepared_generator(public_images, cache, seed)

    def __init__(self, latent_iterations: int = 150, stage_iterations: int = 50, lr: float = 0.05,
                 stage_lr: float = 0.01, restarts: int = 2, radii: Optional[Sequence[float]] = None,
                 radius_fraction: float = 0.1, latent_weight: float = 1e-2):
        self.latent_iterations, self.stage_iterations = latent_iterations, stage_iterations
        self.lr, self.stage_lr, self.restarts = float(lr), float(stage_lr), restarts
        self.radii = None if radii is None else [float(r) for r in radii]
        self.radius_fraction, self.latent_weight = float(radius_fraction), float(latent_weight)

    def _radius(self, stage: int, start: torch.Tensor):
        if self.radii is not None:
            return self.radii[stage - 1]
        return self.radius_fraction * start.reshape(start.shape[0], -1).abs().sum(dim=-1)

    def reconstruct(self, update: VictimUpdate, backbone: torch.nn.Module,
                    generator: Optional[torch.nn.Module] = None,
                    rng: Optional[torch.Generator] = None) -> Reconstruction:
        generator = require_generator(generator, self.name, update)
        n_stages = len(generator.blocks)
        if self.radii is not None and len(self.radii) != n_stages - 1:
            raise ValueError(f"gifd: radii needs one radius per intermediate stage ({n_stages - 1}); "
                             f"got {len(self.radii)}")

        def candidates(matcher, z0):
            """The images of every stage, one after the other."""
            h = search_latent(matcher, generator, z0, self.latent_iterations, self.lr, self.latent_weight)
            for stage in range(n_stages):
                if stage > 0:
                    with torch.no_grad():
                        start = generator.blocks[stage - 1](h)
                    h = self._optimise_stage(matcher, generator, stage, start)
                with torch.no_grad():
                    images = generator.forward_from(h, stage)
                yield images

        return best_generated(update, backbone, generator, rng, self.restarts, candidates)

    def _optimise_stage(self, matcher: _Matcher, generator: torch.nn.Module, stage: int,
                        start: torch.Tensor) -> torch.Tensor:
        radius = self._radius(stage, start)
        h = start.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([h], lr=self.stage_lr)
        for _ in range(self.stage_iterations):
            optimizer.zero_grad()
            matcher(generator.forward_from(h, stage)).backward()
            optimizer.step()
            with torch.no_grad():
                h.copy_(project_l1_ball(h, start, radius, batch_dims=1))
        return h.detach()
