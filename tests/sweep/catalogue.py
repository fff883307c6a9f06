"""Third-party models for the conformance sweep: what users bring, built offline with
seeded random weights at small inputs.

The registry's torchvision wheels are CUDA builds: against the CPU torch pin their
compiled ops do not load, and ``import torchvision`` (and timm, smp and Ultralytics, which
import it) fails while registering fake kernels for those ops ("operator torchvision::nms
does not exist"). The model code is pure Python, so ``import_tolerantly`` imports a library
with those registrations skipped. This workaround lives in the tests only: the library
never imports torchvision.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
import torch.library
from torch import nn


@contextlib.contextmanager
def _fake_registrations_tolerated() -> Iterator[None]:
    """``torch.library.register_fake`` that skips ops missing from the loaded kernels."""
    original = torch.library.register_fake

    def register_fake(op, func=None, /, **kwargs):
        try:
            registered = original(op, func, **kwargs) if func else original(op, **kwargs)
        except RuntimeError:  # the op's compiled kernel is not loaded
            return func if func is not None else (lambda f: f)
        if func is not None:
            return registered

        def decorate(f):
            try:
                return registered(f)
            except RuntimeError:
                return f
        return decorate

    torch.library.register_fake = register_fake
    try:
        yield
    finally:
        torch.library.register_fake = original


def import_tolerantly(name: str) -> ModuleType | None:
    """The module ``name`` (a third-party library), or None where it is not installed.
    torchvision is imported first, here, because libraries that import lazily (transformers)
    would otherwise import it later, outside the tolerance."""
    with _fake_registrations_tolerated():
        try:
            importlib.import_module("torchvision")
        except ImportError:
            pass
        try:
            return importlib.import_module(name)
        except ImportError:
            return None


@dataclass(frozen=True)
class Entry:
    """One model of the sweep: its library, its name there, and how to build it."""

    library: str
    name: str
    build: Callable[[], tuple[nn.Module, tuple[Any, ...]]]
    fast: bool = False  # in the suite's default subset

    @property
    def module(self) -> str:
        """The library's import name."""
        return {"smp": "segmentation_models_pytorch"}.get(self.library, self.library)

    @property
    def id(self) -> str:
        return f"{self.library}:{self.name}"


def _image(size: int, channels: int = 3) -> tuple[torch.Tensor]:
    return (torch.randn(1, channels, size, size, generator=torch.Generator().manual_seed(1)),)


def _tokens(length: int, vocabulary: int) -> tuple[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return (torch.randint(0, vocabulary, (1, length), generator=generator),)


def _torchvision(name: str, size: int, **kwargs) -> Callable:
    def build():
        models = import_tolerantly("torchvision.models")
        factory = functools.reduce(getattr, name.split("."), models)
        return factory(**kwargs), _image(size)
    return build


def _timm(name: str, size: int, **kwargs) -> Callable:
    def build():
        timm = import_tolerantly("timm")
        return timm.create_model(name, pretrained=False, **kwargs), _image(size)
    return build


def _smp(architecture: str, size: int = 64) -> Callable:
    def build():
        smp = import_tolerantly("segmentation_models_pytorch")
        model = getattr(smp, architecture)(encoder_name="resnet18", encoder_weights=None,
                                           classes=2)
        return model, _image(size)
    return build


def _monai(name: str, size: int = 32, **kwargs) -> Callable:
    def build():
        networks = import_tolerantly("monai.networks.nets")
        model = getattr(networks, name)(spatial_dims=2, **kwargs)
        return model, _image(size, kwargs["in_channels"])
    return build


def _efficientnet_pytorch() -> tuple[nn.Module, tuple]:
    library = import_tolerantly("efficientnet_pytorch")
    return library.EfficientNet.from_name("efficientnet-b0", image_size=64), _image(64)


def _masked_tokens(length: int, vocabulary: int) -> dict[str, torch.Tensor]:
    """Token ids and an attention mask that hides the last quarter: keyword inputs."""
    (ids,) = _tokens(length, vocabulary)
    mask = torch.ones_like(ids)
    mask[:, length * 3 // 4:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _transformers(config: str, model: str, inputs: Callable, **settings) -> Callable:
    def build():
        library = import_tolerantly("transformers")
        configuration = getattr(library, config)(**settings)
        return getattr(library, model)(configuration), inputs()
    return build


def _ultralytics(recipe: str, task: str = "DetectionModel") -> Callable:
    def build():
        tasks = import_tolerantly("ultralytics.nn.tasks")
        return getattr(tasks, task)(recipe, verbose=False), _image(64)
    return build


_SMALL_BERT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                   intermediate_size=128, vocab_size=1000)

CATALOGUE: tuple[Entry, ...] = (
    # torchvision
    Entry("torchvision", "resnet18", _torchvision("resnet18", 64)),
    Entry("torchvision", "mobilenet_v2", _torchvision("mobilenet_v2", 64)),
    Entry("torchvision", "mobilenet_v3_small", _torchvision("mobilenet_v3_small", 64)),
    Entry("torchvision", "shufflenet_v2_x0_5", _torchvision("shufflenet_v2_x0_5", 64), fast=True),
    Entry("torchvision", "efficientnet_b0", _torchvision("efficientnet_b0", 64)),
    Entry("torchvision", "regnet_y_400mf", _torchvision("regnet_y_400mf", 64)),
    Entry("torchvision", "convnext_tiny", _torchvision("convnext_tiny", 64)),
    Entry("torchvision", "squeezenet1_1", _torchvision("squeezenet1_1", 64)),
    Entry("torchvision", "densenet121", _torchvision("densenet121", 64)),
    Entry("torchvision", "mnasnet0_5", _torchvision("mnasnet0_5", 64)),
    Entry("torchvision", "googlenet", _torchvision("googlenet", 64, aux_logits=False,
                                                   init_weights=True)),
    Entry("torchvision", "inception_v3", _torchvision("inception_v3", 96, aux_logits=False,
                                                      init_weights=True)),
    Entry("torchvision", "resnext50_32x4d", _torchvision("resnext50_32x4d", 64)),
    Entry("torchvision", "swin_t", _torchvision("swin_t", 64)),
    Entry("torchvision", "vit_b_16", _torchvision("vit_b_16", 64, image_size=64)),
    Entry("torchvision", "maxvit_t", _torchvision("maxvit_t", 224)),  # windows of 7 at /32
    Entry("torchvision", "deeplabv3_mobilenet_v3_large",
          _torchvision("segmentation.deeplabv3_mobilenet_v3_large", 64, weights_backbone=None)),
    Entry("torchvision", "lraspp_mobilenet_v3_large",
          _torchvision("segmentation.lraspp_mobilenet_v3_large", 64, weights_backbone=None)),
    # timm
    Entry("timm", "cspdarknet53", _timm("cspdarknet53", 64)),
    Entry("timm", "levit_128s", _timm("levit_128s", 64, img_size=64)),
    Entry("timm", "mixnet_s", _timm("mixnet_s", 64)),
    Entry("timm", "res2net50_14w_8s", _timm("res2net50_14w_8s", 64)),
    Entry("timm", "skresnet18", _timm("skresnet18", 64)),
    Entry("timm", "efficientformer_l1", _timm("efficientformer_l1", 224)),
    Entry("timm", "edgenext_xx_small", _timm("edgenext_xx_small", 64)),
    Entry("timm", "tf_efficientnet_lite0", _timm("tf_efficientnet_lite0", 64), fast=True),
    Entry("timm", "mobilenetv4_conv_small", _timm("mobilenetv4_conv_small", 64)),
    Entry("timm", "nf_resnet26", _timm("nf_resnet26", 64)),
    Entry("timm", "poolformer_s12", _timm("poolformer_s12", 64)),
    Entry("timm", "vit_tiny_patch16_224", _timm("vit_tiny_patch16_224", 32, img_size=32)),
    Entry("timm", "deit_tiny_patch16_224", _timm("deit_tiny_patch16_224", 64, img_size=64)),
    Entry("timm", "mobilevit_xxs", _timm("mobilevit_xxs", 64)),
    Entry("timm", "ghostnet_100", _timm("ghostnet_100", 64)),
    Entry("timm", "repvgg_a0", _timm("repvgg_a0", 64)),
    Entry("timm", "convnext_atto", _timm("convnext_atto", 64)),
    Entry("timm", "efficientvit_b0", _timm("efficientvit_b0", 64)),
    Entry("timm", "fastvit_t8", _timm("fastvit_t8", 64)),
    Entry("timm", "mobileone_s0", _timm("mobileone_s0", 64)),
    Entry("timm", "regnety_002", _timm("regnety_002", 64)),
    Entry("timm", "rexnet_100", _timm("rexnet_100", 64)),
    Entry("timm", "dla34", _timm("dla34", 64)),
    Entry("timm", "resnest14d", _timm("resnest14d", 64)),
    Entry("timm", "lcnet_050", _timm("lcnet_050", 64)),
    Entry("timm", "hrnet_w18_small", _timm("hrnet_w18_small", 64)),
    Entry("timm", "mobilenetv3_large_100", _timm("mobilenetv3_large_100", 64)),
    # segmentation_models_pytorch
    Entry("smp", "Unet", _smp("Unet")),
    Entry("smp", "FPN", _smp("FPN")),
    Entry("smp", "DeepLabV3Plus", _smp("DeepLabV3Plus")),
    Entry("smp", "Linknet", _smp("Linknet")),
    Entry("smp", "PSPNet", _smp("PSPNet")),
    # MONAI (2-D)
    Entry("monai", "BasicUNet", _monai("BasicUNet", in_channels=1, out_channels=2), fast=True),
    Entry("monai", "UNet", _monai("UNet", in_channels=1, out_channels=2,
                                  channels=(8, 16, 32), strides=(2, 2))),
    Entry("monai", "SegResNet", _monai("SegResNet", in_channels=1, out_channels=2)),
    Entry("monai", "AttentionUnet", _monai("AttentionUnet", in_channels=1, out_channels=2,
                                           channels=(8, 16, 32), strides=(2, 2))),
    Entry("monai", "DenseNet121", _monai("DenseNet121", 64, in_channels=1, out_channels=2)),
    # efficientnet_pytorch
    Entry("efficientnet_pytorch", "efficientnet-b0", _efficientnet_pytorch),
    # Hugging Face transformers (small configurations: nothing is downloaded)
    Entry("transformers", "ViTModel", _transformers(
        "ViTConfig", "ViTModel", lambda: _image(32), image_size=32, patch_size=8,
        **{k: v for k, v in _SMALL_BERT.items() if k != "vocab_size"})),
    Entry("transformers", "BertModel", _transformers(
        "BertConfig", "BertModel", lambda: _tokens(16, 1000), **_SMALL_BERT), fast=True),
    Entry("transformers", "GPT2Model", _transformers(
        "GPT2Config", "GPT2Model", lambda: _tokens(16, 1000), n_embd=64, n_layer=2, n_head=4,
        vocab_size=1000, bos_token_id=0, eos_token_id=0, use_cache=False)),
    # keyword inputs and a ModelOutput returned (BERT); writes into a view of the token ids
    # shifted right (BART's decoder inputs); positions that read no input (Llama's rotary)
    Entry("transformers", "BertModel-keywords", _transformers(
        "BertConfig", "BertModel", lambda: _masked_tokens(16, 1000), **_SMALL_BERT)),
    Entry("transformers", "BartModel", _transformers(
        "BartConfig", "BartModel", lambda: _tokens(16, 1000), d_model=64, encoder_layers=1,
        decoder_layers=1, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=128, decoder_ffn_dim=128, vocab_size=1000,
        max_position_embeddings=64, use_cache=False)),
    Entry("transformers", "LlamaModel", _transformers(
        "LlamaConfig", "LlamaModel", lambda: _tokens(16, 1000), hidden_size=64,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=128, vocab_size=1000, max_position_embeddings=64, use_cache=False)),
    # Ultralytics; the pose head writes into views of its keypoints and caches its anchors
    # in attributes declared on its class
    Entry("ultralytics", "yolov8n", _ultralytics("yolov8n.yaml"), fast=True),
    Entry("ultralytics", "yolo11n", _ultralytics("yolo11n.yaml")),
    Entry("ultralytics", "yolov8n-pose", _ultralytics("yolov8n-pose.yaml", "PoseModel")),
)
