"""The zoo: published parameter counts, output shapes, seeded weights, loading your own model."""

from __future__ import annotations

import textwrap

import pytest
import torch

import edgeweave as ew
from edgeweave.errors import EdgeweaveError, ModelError, UnknownNameError
from tests.conftest import zoo_model, zoo_output

# Parameter counts as published (torchvision's model cards; timm for Inception-ResNet-v2;
# Ultralytics' model summary for YOLOv5s v6.0+, 80 classes).
PUBLISHED_PARAMS = {
    "alexnet": 61_100_840,
    "alexnet_p": 60_965_224,  # Krizhevsky et al. 2012's two-tower layout
    "vgg16": 138_357_544,
    "googlenet": 6_624_904,
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "mobilenet_v2": 3_504_872,
    "inception_resnet_v2": 55_843_464,
    "yolov5s": 7_235_389,
}

OUTPUT_SHAPES = {
    "alexnet": [(1, 1000)], "alexnet_p": [(1, 1000)], "vgg16": [(1, 1000)], "googlenet": [(1, 1000)],
    "resnet18": [(1, 1000)], "resnet50": [(1, 1000)], "mobilenet_v2": [(1, 1000)],
    "inception_resnet_v2": [(1, 1000)], "yolov2": [(1, 425, 19, 19)],
    "yolov2_16": [(1, 256, 38, 38)],
    "yolov5s": [(1, 255, 80, 80), (1, 255, 40, 40), (1, 255, 20, 20)],
    "siamese": [(1, 2)], "multistream": [(1, 1000)], "line": [(1, 10)], "two_branch": [(1, 10)],
}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_parameter_count_equals_the_published_figure(name):
    module, _ = zoo_model(name)
    assert _count(module) == PUBLISHED_PARAMS[name]


def test_yolov2_holds_exactly_the_numbers_of_darknets_weights_file():
    # yolov2.weights (608x608 cfg) stores 50,983,561 floats: the parameters plus the
    # running mean and variance of every batch norm.
    module, _ = zoo_model("yolov2")
    running = sum(m.running_mean.numel() + m.running_var.numel()
                  for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert _count(module) + running == 50_983_561


def test_yolov2_16_is_twelve_convolutions_and_four_max_pools():
    module, _ = zoo_model("yolov2_16")
    assert sum(isinstance(m, torch.nn.Conv2d) for m in module.modules()) == 12
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in module.modules()) == 4


def test_every_zoo_model_is_listed_with_its_output_shapes():
    assert set(ew.models.names()) == set(OUTPUT_SHAPES)


@pytest.mark.parametrize("name", sorted(OUTPUT_SHAPES))
def test_output_shapes_and_eval_mode(name):
    module, _ = zoo_model(name)
    assert not module.training
    assert [tuple(t.shape) for t in zoo_output(name)] == OUTPUT_SHAPES[name]
    assert all(torch.isfinite(t).all() for t in zoo_output(name))


def test_weights_are_seeded_and_leave_the_global_rng_alone():
    state = torch.random.get_rng_state()
    first, x1 = ew.models.get("line", seed=3)
    second, x2 = ew.models.get("line", seed=3)
    other, _ = ew.models.get("line", seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(x1, x2)
    for (_, a), (_, b), (_, c) in zip(first.state_dict().items(), second.state_dict().items(),
                                      other.state_dict().items()):
        assert torch.equal(a, b)
    assert not torch.equal(first.features[0].weight, other.features[0].weight)


def test_unknown_model_names_the_known_ones():
    with pytest.raises(UnknownNameError, match="Unknown model 'resnet19'.*resnet18"):
        ew.models.get("resnet19")


def test_load_takes_your_own_model_from_a_file(tmp_path):
    source = tmp_path / "mine.py"
    source.write_text(textwrap.dedent("""
        import torch
        def build():
            return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
        def build_with_example():
            return build(), torch.zeros(1, 3, 10, 10)
    """))
    module, example = ew.models.load(f"{source}:build", input_shape=(1, 3, 8, 8))
    assert example.shape == (1, 3, 8, 8) and not module.training
    _, example = ew.models.load(f"{source}:build_with_example")
    assert example.shape == (1, 3, 10, 10)
    with pytest.raises(ModelError, match="no example input"):
        ew.models.load(f"{source}:build")
    with pytest.raises(UnknownNameError, match="no attribute 'missing'"):
        ew.models.load(f"{source}:missing")
    with pytest.raises(EdgeweaveError, match="No model file"):
        ew.models.load(f"{tmp_path}/absent.py:build")
    with pytest.raises(ModelError, match="Cannot import"):
        ew.models.load("no_such_package_xyz:build")
