"""Training steps replayed as CUDA graphs: the models here are small, so a step on a GPU costs
the launches of its hundred-odd kernels, not their arithmetic. One graph launches them all, for
a group of consecutive steps at once.

A recipe's step qualifies when it is *graph-safe*: its batch tensors carry everything random
(noise, augmentation) and it reads nothing back to the host, and its optimisers are capturable
(:func:`fmnist_toolkit.engine.device.adam_options`). It then trains exactly as eagerly would,
batch after batch: :func:`fmnist_toolkit.engine.loop.fit` hands the graph step a list of
``batches_per_call`` batches; the first lists of each shape run eagerly (on a side stream, as
capture wants), the next one is captured, and every later list of that shape is copied into the
graph's inputs (one copy per tensor) and replayed. An epoch's short last group gets a graph of
its own the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fmnist_toolkit.engine.device import matmul_precision

if TYPE_CHECKING:
    import torch

    from fmnist_toolkit.engine.loop import Step

WARMUP_CALLS = 3  # eager calls of a shape before its capture: cuDNN and the optimisers set up
# Steps per replay. Launching a graph, copying its inputs and the loop's own bookkeeping cost
# tens of microseconds each; a GAN step at batch 64 runs in a few hundred, so a group of 16
# makes that overhead small. Memory does not grow: the group's steps reuse one pool.
BATCHES_PER_CALL = 16

Batch = tuple["torch.Tensor", ...]


class GraphedStep:
    """Replays a graph-safe ``step(batch) -> (tracked, size)`` as CUDA graphs over groups of
    consecutive batches; called with a list of batches, returns their mean and total size."""

    def __init__(self, step: Step, *, grouped: bool = True) -> None:
        self.step = step
        self.batches_per_call = BATCHES_PER_CALL if grouped else 1
        self.warmup = WARMUP_CALLS
        self.graphs: dict[tuple[Any, ...], _Graph] = {}
        self.eager_calls: dict[tuple[Any, ...], int] = {}

    def __call__(self, batches: list[Batch]) -> tuple[torch.Tensor, int]:
        key = tuple(tuple(tensor.shape) for batch in batches for tensor in batch)
        graph = self.graphs.get(key)
        if graph is not None:
            return graph.replay(batches)
        calls = self.eager_calls.get(key, 0) + 1
        self.eager_calls[key] = calls
        if calls > self.warmup:
            graph = self.graphs[key] = _Graph.capture(self._steps, batches)
            return graph.output
        return self._eager(batches)

    def _steps(self, batches: list[Batch]) -> tuple[torch.Tensor, int]:
        """The steps one after the other; their tracked numbers averaged over the rows."""
        total = 0
        tracked_sum: torch.Tensor | None = None
        for batch in batches:
            tracked, size = self.step(batch)
            weighted = tracked * size
            tracked_sum = weighted if tracked_sum is None else tracked_sum.add_(weighted)
            total += size
        assert tracked_sum is not None
        return tracked_sum / total, total

    def _eager(self, batches: list[Batch]) -> tuple[torch.Tensor, int]:
        """Eagerly, on a side stream, as torch.cuda.graphs asks of the steps before a capture."""
        import torch

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            result = self._steps(batches)
        torch.cuda.current_stream().wait_stream(side)
        return result


class _Graph:
    """One captured group: its static input tensors (each field's batches end to end), the
    batch sizes that split them, and the static output the replays overwrite."""

    def __init__(self, inputs: tuple[torch.Tensor, ...], sizes: list[int]) -> None:
        self.inputs = inputs
        self.sizes = sizes
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output: tuple[torch.Tensor, int] = ()  # type: ignore[assignment]

    @classmethod
    def capture(cls, steps: Any, batches: list[Batch]) -> _Graph:
        import torch

        fields = range(len(batches[0]))
        inputs = tuple(torch.cat([batch[field] for batch in batches]) for field in fields)
        self = cls(inputs, [len(batch[0]) for batch in batches])
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize()
        with torch.cuda.graph(graph):
            self.output = steps(self._split())
        self.graph = graph
        graph.replay()  # capture records the steps without running them
        return self

    def _split(self) -> list[Batch]:
        """The static inputs as the group's batches (views)."""
        batches = []
        start = 0
        for size in self.sizes:
            batches.append(tuple(tensor[start : start + size] for tensor in self.inputs))
            start += size
        return batches

    def replay(self, batches: list[Batch]) -> tuple[torch.Tensor, int]:
        import torch

        for field, static in enumerate(self.inputs):
            torch.cat([batch[field] for batch in batches], out=static)
        assert self.graph is not None
        self.graph.replay()
        return self.output


class _WithMatmulPrecision:
    """A step (graphed or not) run with CUDA's TF32 matrix products (:func:`matmul_precision`)."""

    def __init__(self, step: Step, precision: str) -> None:
        self.step = step
        self.precision = precision
        if hasattr(step, "batches_per_call"):
            self.batches_per_call = step.batches_per_call

    def __call__(self, batch: Any) -> tuple[torch.Tensor, int]:
        with matmul_precision(self.precision):
            return self.step(batch)


def accelerated_step(
    step: Step,
    device: torch.device,
    *,
    cuda_graphs: bool = True,
    precision: str = "fp32",
    per_batch_callbacks: bool = False,
) -> Step:
    """``step`` replayed as CUDA graphs on CUDA (when ``cuda_graphs``), with TF32 products when
    ``precision`` is tf32; ``step`` elsewhere. ``per_batch_callbacks``: a callback acts between
    any two batches (a learning rate set before every batch), so a graph holds one step."""
    if device.type != "cuda":
        return step
    accelerated = GraphedStep(step, grouped=not per_batch_callbacks) if cuda_graphs else step
    return _WithMatmulPrecision(accelerated, precision) if precision == "tf32" else accelerated


def graph_ready(optimizer: torch.optim.Optimizer, device: torch.device, *, enabled: bool) -> bool:
    """Whether steps with ``optimizer`` can be replayed as CUDA graphs (``enabled``, on CUDA,
    a capturable optimiser: Adam as :func:`fmnist_toolkit.engine.device.adam_options` makes it,
    not the report's plain SGD, whose update reads the rate back to the host); if so, hold
    each learning rate in a device tensor.

    A captured step keeps the numbers it was captured with; a tensor lets a schedule
    (:class:`fmnist_toolkit.engine.callbacks.LearningRateSchedule`) change the rate in place.
    Call it after any checkpoint is restored into ``optimizer``.
    """
    import torch

    if not (enabled and device.type == "cuda" and optimizer.defaults.get("capturable")):
        return False
    for group in optimizer.param_groups:
        group["lr"] = torch.tensor(float(group["lr"]), device=device)
    return True
