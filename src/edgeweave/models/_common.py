"""Building blocks shared by the zoo: seeded construction and the conv-BN-activation block."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


def seeded(build: Callable[[], nn.Module], seed: int,
           input_shapes: tuple[tuple[int, ...], ...] = ()) -> nn.Module:
    """Build a module and give it seeded random weights, leaving torch's global RNG untouched.

    Convolutions and linear layers get He-normal weights (fan-in); batch norms get random
    affine parameters, and their running statistics are measured on one seeded random
    batch of ``input_shapes`` (batch 2), as training would leave them. Activations then
    stay of order one through deep and residual stacks, so a partitioned run compared with
    the whole model compares well-conditioned numbers, and a misapplied norm shows.
    """
    with torch.random.fork_rng(devices=[]):
        module = build()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for sub in module.modules():
            _init_module(sub, generator)
        if input_shapes:
            _calibrate_batch_norms(module, input_shapes, generator)
    return module.eval()


def _calibrate_batch_norms(module: nn.Module, input_shapes, generator) -> None:
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    module.eval()
    for norm in norms:  # only the norms learn; dropout stays off
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the calibration batch
        norm.train()
    batch = [torch.randn((2, *shape[1:]), generator=generator) for shape in input_shapes]
    module(*batch)
    for norm in norms:
        norm.momentum = 0.1
        norm.eval()


def _init_module(module: nn.Module, generator: torch.Generator) -> None:
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
        fan_in = module.weight[0].numel()
        module.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
        if module.bias is not None:
            module.bias.uniform_(-0.1, 0.1, generator=generator)
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        module.weight.uniform_(0.8, 1.2, generator=generator)
        module.bias.uniform_(-0.1, 0.1, generator=generator)


def autopad(kernel: int | tuple[int, int]) -> int | tuple[int, int]:
    """'Same' padding for an odd kernel at stride 1."""
    return kernel // 2 if isinstance(kernel, int) else (kernel[0] // 2, kernel[1] // 2)


class ConvBNAct(nn.Sequential):
    """Convolution without bias, batch norm, activation: the unit of most modern CNNs."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int | tuple[int, int] = 1,
        stride: int = 1,
        padding: int | tuple[int, int] | None = None,
        groups: int = 1,
        act: type[nn.Module] | None = nn.ReLU,
        eps: float = 1e-5,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel,
                stride,
                autopad(kernel) if padding is None else padding,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels, eps=eps),
        ]
        if act is not None:
            layers.append(act())
        super().__init__(*layers)
