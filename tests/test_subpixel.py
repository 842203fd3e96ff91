"""The sub-pixel forward of narrow transposed convolutions: the layer's numbers, its gradients,
and only where it was measured faster."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from fmnist_toolkit.engine.device import place_model
from fmnist_toolkit.engine.subpixel import eligible, use_subpixel_forward
from fmnist_toolkit.models.autoencoder import SeedAutoencoder


@pytest.mark.parametrize(
    ("in_channels", "out_channels", "kernel", "padding", "output_padding", "bias", "size"),
    [
        (8, 1, 3, 1, 1, True, 14),  # the report's last decoder layer
        (16, 8, 3, 1, 1, True, 7),
        (4, 3, 4, 1, 0, False, 7),  # the DCGAN's geometry
        (6, 5, 2, 0, 0, True, 5),  # the U-Net's
    ],
)
def test_the_subpixel_forward_gives_the_layers_numbers_and_gradients(
    in_channels: int,
    out_channels: int,
    kernel: int,
    padding: int,
    output_padding: int,
    bias: bool,
    size: int,
) -> None:
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(
        in_channels, out_channels, kernel, 2, padding, output_padding, bias=bias
    )
    fast = copy.deepcopy(layer)
    assert use_subpixel_forward(fast) == 1
    images = torch.randn(3, in_channels, size, size)
    ours, theirs = images.clone().requires_grad_(True), images.clone().requires_grad_(True)
    expected, got = layer(theirs), fast(ours)
    assert got.shape == expected.shape == (3, out_channels, 2 * size, 2 * size)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    upstream = torch.randn_like(expected)
    expected.backward(upstream)
    got.backward(upstream)
    torch.testing.assert_close(ours.grad, theirs.grad)
    torch.testing.assert_close(fast.weight.grad, layer.weight.grad)
    if bias:
        torch.testing.assert_close(fast.bias.grad, layer.bias.grad)


def test_only_narrow_layers_whose_output_is_exactly_stride_times_larger_qualify() -> None:
    assert eligible(nn.ConvTranspose2d(8, 1, 3, 2, 1, 1))
    assert not eligible(nn.ConvTranspose2d(64, 32, 3, 2, 1, 1))  # measured slower when wide
    assert not eligible(nn.ConvTranspose2d(8, 4, 3, 2))  # 3x3 -> 7x7: not 2x
    assert not eligible(nn.ConvTranspose2d(8, 4, 3, 1, 1))  # stride 1
    assert not eligible(nn.ConvTranspose2d(8, 4, 4, 2, 1, groups=2))
    assert not eligible(nn.Conv2d(8, 4, 3))


def test_cpu_placement_changes_the_narrow_decoder_layers_but_not_the_weights_names() -> None:
    torch.manual_seed(0)
    model = SeedAutoencoder()
    reference = copy.deepcopy(model).eval()
    names = list(model.state_dict())
    placed = place_model(model, torch.device("cpu")).eval()
    changed = [layer for layer in placed.modules() if type(layer) is not nn.ConvTranspose2d]
    subpixel = [layer for layer in changed if isinstance(layer, nn.ConvTranspose2d)]
    assert [(layer.in_channels, layer.out_channels) for layer in subpixel] == [(16, 8), (8, 1)]
    assert list(placed.state_dict()) == names
    images = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(placed(images), reference(images), atol=1e-5, rtol=1e-5)
    # A weight average deep-copies the model: the copy keeps the fast forward.
    averaged = copy.deepcopy(placed)
    assert type(averaged.decoder[-2]) is type(placed.decoder[-2])


def test_under_bf16_autocast_it_computes_in_bf16_like_the_layer() -> None:
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(8, 1, 3, 2, 1, 1)
    fast = copy.deepcopy(layer)
    use_subpixel_forward(fast)
    images = torch.randn(4, 8, 14, 14)
    ours, theirs = images.clone().requires_grad_(True), images.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected, got = layer(theirs), fast(ours)
    assert got.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected.float(), atol=0.05, rtol=0.02)
    got.float().sum().backward()
    expected.float().sum().backward()
    assert ours.grad.dtype == torch.float32 and fast.weight.grad.dtype == torch.float32
    torch.testing.assert_close(fast.weight.grad, layer.weight.grad, atol=0.05, rtol=0.02)
    torch.testing.assert_close(ours.grad, theirs.grad, atol=0.05, rtol=0.02)
