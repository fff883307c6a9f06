"""Building blocks shared by the zoo: seeded construction and the conv-BN-activation block."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


def seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a module and give it seeded random weights, leaving torch's global RNG untouched.

    Convolutions and linear layers get He-normal weights (fan-in) so that activations keep
    their scale through deep stacks: a partitioned run compared with the whole model then
    compares numbers of order one, not vanishing ones. Batch norms get random affine
    parameters and running statistics, so that a wrongly applied norm shows in the output.
    """
    with torch.random.fork_rng(devices=[]):
        module = build()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for sub in module.modules():
            _init_module(sub, generator)
    return module.eval()


def _init_module(module: nn.Module, generator: torch.Generator) -> None:
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
        fan_in = module.weight[0].numel()
        module.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
        if module.bias is not None:
            module.bias.uniform_(-0.1, 0.1, generator=generator)
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        module.weight.uniform_(0.8, 1.2, generator=generator)
        module.bias.uniform_(-0.1, 0.1, generator=generator)
        module.running_mean.uniform_(-0.1, 0.1, generator=generator)
        module.running_var.uniform_(0.8, 1.2, generator=generator)


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
