"""Training steps replayed as CUDA graphs: the models here are small, so a step on a GPU costs
the launches of its hundred-odd kernels, not their arithmetic. One graph launches them all.

A recipe's step qualifies when it is *graph-safe*: its batch tensors carry everything random
(noise, augmentation) and it reads nothing back to the host, and its optimisers are capturable
(:func:`fmnist_toolkit.engine.device.optimizer_options`). It then trains exactly as eagerly:
the first batches run eagerly (on a side stream, as capture wants), the next one is captured and
replayed, and every later batch of the same shapes is copied into the graph's inputs and
replayed; a batch of other shapes (an epoch's short last one) runs eagerly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from fmnist_toolkit.engine.loop import Step

WARMUP_STEPS = 3  # eager steps before capture: cuDNN and the optimisers set up their state


class GraphedStep:
    """Wraps a graph-safe ``step(batch) -> (tracked, size)`` for replay as a CUDA graph."""

    def __init__(self, step: Step, warmup: int = WARMUP_STEPS) -> None:
        self.step = step
        self.warmup = warmup
        self.calls = 0  # eager steps on batches of the captured shapes
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: tuple[torch.Tensor, ...] = ()
        self.output: tuple[torch.Tensor, int] | None = None

    def __call__(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, int]:
        import torch

        if self.graph is not None and _same_shapes(batch, self.inputs):
            for static, given in zip(self.inputs, batch, strict=True):
                static.copy_(given, non_blocking=True)
            self.graph.replay()
            assert self.output is not None
            return self.output
        if not self.inputs:
            self.inputs = tuple(tensor.clone() for tensor in batch)  # the epoch's full batches
        elif self.graph is None and _same_shapes(batch, self.inputs):
            self.calls += 1
            if self.calls > self.warmup:
                return self._capture(batch)
        # Eager, on a side stream while warming up, as torch.cuda.graphs asks before a capture.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            result = self.step(batch)
        torch.cuda.current_stream().wait_stream(side)
        return result

    def _capture(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, int]:
        import torch

        for static, given in zip(self.inputs, batch, strict=True):
            static.copy_(given)
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize()
        with torch.cuda.graph(graph):
            self.output = self.step(self.inputs)
        self.graph = graph
        graph.replay()  # capture records the step without running it
        return self.output


def _same_shapes(batch: tuple[Any, ...], inputs: tuple[torch.Tensor, ...]) -> bool:
    return len(batch) == len(inputs) and all(
        given.shape == static.shape for given, static in zip(batch, inputs, strict=True)
    )


def accelerated_step(step: Step, device: torch.device, *, cuda_graphs: bool = True) -> Step:
    """``step`` replayed as a CUDA graph on CUDA (when ``cuda_graphs``); ``step`` elsewhere."""
    if device.type == "cuda" and cuda_graphs:
        return GraphedStep(step)
    return step


def graph_ready(optimizer: torch.optim.Optimizer, device: torch.device, *, enabled: bool) -> None:
    """Hold each learning rate in a device tensor when steps are replayed as CUDA graphs.

    A captured step keeps the numbers it was captured with; a tensor lets a schedule
    (:class:`fmnist_toolkit.engine.callbacks.LearningRateSchedule`) change the rate in place.
    Call it after any checkpoint is restored into ``optimizer``.
    """
    import torch

    if not (enabled and device.type == "cuda"):
        return
    for group in optimizer.param_groups:
        group["lr"] = torch.tensor(float(group["lr"]), device=device)
