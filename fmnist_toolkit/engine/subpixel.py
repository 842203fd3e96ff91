"""A faster forward for strided transposed convolutions on the CPU: the same layer computed as
a stride-1 convolution into ``stride²`` times the channels, then a pixel shuffle.

A transposed convolution of stride s writes each output pixel from a few input pixels; which
kernel taps it uses depends only on the pixel's phase (its row and column modulo s). So the
layer equals an ordinary convolution whose s² output groups are the phases (their kernels
gathered from the layer's own weight), interleaved by ``pixel_shuffle``. oneDNN's transposed
convolution with few output channels is slow in the forward direction (the report's last
decoder layer, 8 → 1 channels: 9.5 ms forward at batch 256 on one core, against 3.6 ms this
way). The backward is the layer's own (``aten.convolution_backward``, transposed), so the
gradients are those of ``nn.ConvTranspose2d``; the forward differs only in the order of its
sums (a few units in the seventh digit). The weights stay where they are: the module keeps its
class and state-dict names, only its forward changes (:func:`use_subpixel_forward`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn


@functools.cache
def _phase_taps(kernel: int, stride: int, padding: int) -> tuple[list[list[int]], int, int]:
    """For each phase a (0..stride-1) the kernel tap used at each input offset of the stride-1
    kernel (``kernel`` where none is: the zero slot), and that kernel's first offset and size.

    Output pixel ``stride * i + a`` reads input ``i + d`` through tap ``a + padding - stride * d``.
    """
    offsets = {
        d
        for a in range(stride)
        for d in range(-kernel, kernel + 1)
        if 0 <= a + padding - stride * d < kernel
    }
    first, last = min(offsets), max(offsets)
    taps = [
        [
            tap if 0 <= (tap := a + padding - stride * d) < kernel else kernel
            for d in range(first, last + 1)
        ]
        for a in range(stride)
    ]
    return taps, first, last - first + 1


def subpixel_weight(weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """A transposed convolution's weight [in, out, k, k] as the stride-1 convolution's
    [out * stride², in, K, K], output channel ``o * stride² + a * stride + b`` for phase (a, b)."""
    import torch

    kernel = weight.shape[-1]
    taps, _, size = _phase_taps(kernel, stride, padding)
    index = torch.tensor(taps, device=weight.device)  # [stride, K]
    padded = torch.nn.functional.pad(weight, (0, 1, 0, 1))  # tap ``kernel`` reads a zero
    gathered = padded[:, :, index[:, None, :, None], index[None, :, None, :]]
    # [in, out, a, b, K, K] -> [out, a, b, in, K, K]
    gathered = gathered.permute(1, 2, 3, 0, 4, 5)
    return gathered.reshape(-1, weight.shape[0], size, size)


def subpixel_transposed_conv(
    images: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, padding: int
) -> torch.Tensor:
    """``conv_transpose2d(images, weight, bias, stride, padding, output_padding)`` for a layer
    whose output is exactly ``stride`` times its input (see :func:`eligible`)."""
    import torch

    _, first, size = _phase_taps(weight.shape[-1], stride, padding)
    height, width = images.shape[-2:]
    # Pad so that a stride-1 kernel of ``size`` taps starting at offset ``first`` gives one
    # output per input pixel.
    before, after = -first, size - 1 + first
    padded = torch.nn.functional.pad(images, (before, after, before, after))
    phases = torch.nn.functional.conv2d(
        padded,
        subpixel_weight(weight, stride, padding),
        None if bias is None else bias.repeat_interleave(stride * stride),
    )
    assert phases.shape[-2:] == (height, width)
    return torch.nn.functional.pixel_shuffle(phases, stride)


@functools.cache
def _subpixel_forward() -> Any:
    """The autograd function, made on first use so that importing this module needs no torch."""
    import torch

    class SubpixelForward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, images, weight, bias, stride, padding, output_padding):  # type: ignore[no-untyped-def]
            # Under autocast, compute in its type as the layer would (autocast casts a
            # transposed convolution's input and weight), and keep those tensors for backward.
            device_type = images.device.type
            dtype = _autocast_dtype(device_type)
            if dtype is not None:
                images, weight = images.to(dtype), weight.to(dtype)
                bias = None if bias is None else bias.to(dtype)
            ctx.save_for_backward(images, weight)
            ctx.geometry = (stride, padding, output_padding, bias is not None)
            with torch.autocast(device_type, enabled=False):
                return subpixel_transposed_conv(images, weight, bias, stride, padding)

        @staticmethod
        def backward(ctx, grad):  # type: ignore[no-untyped-def]
            images, weight = ctx.saved_tensors
            stride, padding, output_padding, has_bias = ctx.geometry
            wanted = list(ctx.needs_input_grad[:3])
            wanted[2] = wanted[2] and has_bias
            grad_images, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
                grad.to(images.dtype),
                images,
                weight,
                [weight.shape[1]] if has_bias else None,
                [stride, stride],
                [padding, padding],
                [1, 1],
                True,  # transposed
                [output_padding, output_padding],
                1,
                wanted,
            )
            return grad_images, grad_weight, grad_bias, None, None, None

    return SubpixelForward


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The type autocast computes convolutions in on ``device_type``, or None when it is off."""
    import torch

    try:
        enabled = torch.is_autocast_enabled(device_type)
        return torch.get_autocast_dtype(device_type) if enabled else None
    except (TypeError, AttributeError):  # torch before 2.4: per-device functions
        if device_type == "cpu" and torch.is_autocast_cpu_enabled():
            return torch.get_autocast_cpu_dtype()
        return None


# Measured on one core at batch 256 (forward and backward): 8 -> 1 channels 11.8 -> 6.7 ms,
# 16 -> 8 7.2 -> 6.7 ms; but 64 -> 32 166 -> 230 ms, 128 -> 64 31 -> 48 ms, and the DCGAN's
# 64 -> 1 (kernel 4) 21.5 -> 27.5 ms: oneDNN's own kernel wins once the input is wide.
NARROW_INPUT = 16


def eligible(layer: nn.Module) -> bool:
    """A plain 2-D transposed convolution (square, one group, no dilation) with at most
    :data:`NARROW_INPUT` input channels whose output is exactly ``stride`` times its input,
    stride 2 or more: where the sub-pixel forward was measured faster."""
    from torch import nn

    if type(layer) is not nn.ConvTranspose2d:
        return False
    (kernel, kernel_w), (stride, stride_w) = layer.kernel_size, layer.stride
    (padding, padding_w), (extra, extra_w) = layer.padding, layer.output_padding
    square = kernel == kernel_w and stride == stride_w and padding == padding_w and extra == extra_w
    # (n - 1) * s - 2p + k + extra == s * n for every n
    exact = kernel + extra - 2 * padding == stride
    plain = layer.groups == 1 and layer.dilation == (1, 1) and layer.padding_mode == "zeros"
    narrow = layer.in_channels <= NARROW_INPUT
    return square and exact and plain and narrow and stride >= 2


def use_subpixel_forward(model: nn.Module) -> int:
    """Give every eligible transposed convolution of ``model`` the sub-pixel forward (its
    weights, names and backward unchanged); returns how many it changed."""
    changed = 0
    for layer in model.modules():
        if eligible(layer):
            layer.__class__ = _subpixel_class()
            changed += 1
    return changed


@functools.cache
def _subpixel_class() -> type:
    from torch import nn

    class SubpixelConvTranspose2d(nn.ConvTranspose2d):
        """``nn.ConvTranspose2d`` with the sub-pixel forward (see the module's docstring)."""

        def forward(self, images: torch.Tensor, output_size: Any = None) -> torch.Tensor:
            if output_size is not None:  # an explicit output size: the layer's own path
                return super().forward(images, output_size)
            return _subpixel_forward().apply(
                images, self.weight, self.bias, self.stride[0], self.padding[0],
                self.output_padding[0],
            )  # fmt: skip

    return SubpixelConvTranspose2d
