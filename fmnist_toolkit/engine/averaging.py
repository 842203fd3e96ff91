"""Weight averaging: an exponential moving average of a network, updated inside the training
step (the GAN's generator, the classifier with ``--ema``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


class WeightAverage:
    """An exponential moving average of a network's weights (and buffers), updated by the
    training step.

    The GAN saves and draws its generator's average: it smooths the step-to-step wandering of
    adversarial training (the generator averaging of Karras et al. 2018 and BigGAN); a
    classifier's average (``--ema``) is what it validates and saves. It lives
    in torch's ``AveragedModel`` (the checkpoint layout) and starts as its copy of the initial
    network; each update moves it ``1 - decay`` of the way with a fixed weight and reads
    nothing back to the host, so the update is part of a step's CUDA graph. (AveragedModel's
    own update copies at its first call, a host-side branch; the initial weights' share of the
    average is decay ** steps, under 1e-20 after one epoch at 0.999.)
    """

    def __init__(self, network: nn.Module, decay: float) -> None:
        import itertools

        from torch.optim.swa_utils import AveragedModel

        device = next(network.parameters()).device
        self.average = AveragedModel(network, device=device, use_buffers=True)
        self.decay = decay
        pairs = list(
            zip(
                itertools.chain(self.average.module.parameters(), self.average.module.buffers()),
                itertools.chain(network.parameters(), network.buffers()),
                strict=True,
            )
        )
        floating = [(mean.detach(), now.detach()) for mean, now in pairs if now.is_floating_point()]
        self.means = [mean for mean, _ in floating]
        self.current = [now for _, now in floating]
        self.counters = [(mean, now) for mean, now in pairs if not now.is_floating_point()]

    def update(self) -> None:
        """Move the average towards the current weights (in the step; no host sync)."""
        import torch

        with torch.no_grad():
            torch._foreach_lerp_(self.means, self.current, 1.0 - self.decay)
            for mean, now in self.counters:
                mean.copy_(now)
            self.average.n_averaged.add_(1)
