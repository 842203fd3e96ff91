"""Typed, frozen configs that round-trip to JSON; a saved model's config is one of these."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

ConfigT = TypeVar("ConfigT")

OPTIMIZERS = ("adam", "sgd")
PRECISIONS = ("auto", "fp32", "tf32", "bf16")
# constant: the report's; cosine: decay to 0 over the epochs; onecycle and warmup-cosine change
# the rate every batch, with --lr as the peak (engine/callbacks.py).
SCHEDULES = ("constant", "cosine", "onecycle", "warmup-cosine")
OBJECTIVES = ("reconstruct", "denoise")
# Architectures of ``fmt ae train`` that are denoisers (kind "denoiser"), not autoencoders.
DENOISER_ARCHITECTURES = ("unet",)
# The denoiser ``fmt gan gate`` makes: another model behind a detector of a generator's samples.
GATED_ARCHITECTURE = "gated"
# Fewer generator samples leave the detector too few to learn from or to validate on.
MIN_GATE_SAMPLES = 100
# What may clean images (``--denoiser``, and what a gated denoiser wraps): image-to-image models.
IMAGE_TO_IMAGE_KINDS = ("denoiser", "autoencoder")
# The model registry's architectures by family, named here so that the CLI's choices need no
# torch import; tests/test_cli.py keeps them equal to the registry.
AUTOENCODER_ARCHITECTURES = ("seed", "wide", "residual")
# The kinds a saved model's config names (the registry's, less the discriminator, which is
# saved with its generator).
MODEL_KINDS = ("autoencoder", "classifier", "denoiser", "generator")
GAN_ARCHITECTURES = ("mlp", "dcgan")
# "bce": binary cross-entropy with the non-saturating generator loss (the report's);
# "hinge": the hinge loss of SNGAN and BigGAN.
GAN_LOSSES = ("bce", "hinge")
# Recipe options that only one architecture reads (the other records but ignores them).
GAN_ARCHITECTURE_ONLY = {"hidden_size": "mlp", "width": "dcgan"}
# The same for the recipe of `fmt ae train`: only the U-Net denoiser reads these...
UNET_ONLY = ("width", "min_correction")
# ... and only a model trained with --objective denoise these.
DENOISE_ONLY = ("sharpen",)
#: The strongest unsharp mask a denoiser may end with (``--sharpen``).
MAX_SHARPEN = 2.0
NUM_CLASSES = 10  # what a class-conditional GAN is conditioned on


def config_to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as a JSON-ready dict."""
    return dataclasses.asdict(config)


def config_from_dict(cls: type[ConfigT], values: dict[str, Any]) -> ConfigT:
    """Rebuild a config, ignoring keys that a newer or older toolkit wrote but this one lacks."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kept = {key: value for key, value in values.items() if key in fields}
    for key, value in kept.items():
        # JSON has no tuples: a tuple field comes back a list, and the config would no longer
        # equal the one that was saved.
        if isinstance(value, list) and str(fields[key].type).startswith("tuple"):
            kept[key] = tuple(value)
    return cls(**kept)


@dataclass(frozen=True)
class EngineConfig:
    """Where and how the engine computes: device, numeric precision and compilation."""

    device: str = "auto"
    # "auto": bf16 where measured faster for the recipe on this device (engine/device.py),
    # else fp32; a saved model records the precision its run resolved to.
    precision: str = "auto"
    compile: bool = False  # torch.compile, CUDA only
    cuda_graphs: bool = True  # replay each training step as one CUDA graph (CUDA only)


@dataclass(frozen=True)
class ModelSpec:
    """What rebuilds a network without guessing: its kind, registered architecture and arguments."""

    kind: str
    architecture: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AutoencoderTrainConfig:
    """The recipe of ``fmt ae train``; defaults are the course report's best trial."""

    COMMAND: ClassVar[str] = "fmt ae train"  # what trains it: recorded, and checked on --resume

    latent_dim: int = 16
    architecture: str = "seed"
    epochs: int = 60
    batch_size: int = 256
    optimizer: str = "adam"
    lr: float = 0.00099
    weight_decay: float = 3.5237e-5
    seed: int = 0
    schedule: str = "constant"  # any of SCHEDULES; lr is then the peak rate
    objective: str = "reconstruct"  # "denoise": corrupted images in, clean images as targets
    width: int = 16  # unet only: channels of its finest level
    min_correction: float = 0.0  # unet only: smaller corrections are dropped when cleaning
    sharpen: float = 0.0  # --objective denoise only: an unsharp mask after cleaning
    # --objective denoise only: generators whose samples join the training images as clean
    # ones (corrupted like the others, with themselves as target), so that the denoiser learns
    # to leave such samples as they are; clean_sample_count of each.
    clean_samples: tuple[str, ...] = ()
    clean_sample_count: int = 6000

    def model_spec(self) -> ModelSpec:
        # Only when set: a spec without it is the model it always was.
        sharpen = {"sharpen": self.sharpen} if self.sharpen else {}
        if self.architecture in DENOISER_ARCHITECTURES:
            return ModelSpec(
                kind="denoiser",
                architecture=self.architecture,
                params={"width": self.width, "min_correction": self.min_correction, **sharpen},
            )
        return ModelSpec(
            kind="autoencoder",
            architecture=self.architecture,
            params={"latent_dim": self.latent_dim, **sharpen},
        )


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """The recipe of ``fmt clf finetune``; defaults are the report's (frozen encoder)."""

    COMMAND: ClassVar[str] = "fmt clf finetune"  # what trains it: recorded, and checked on --resume

    encoder: str = "ae-16"  # the autoencoder (store name or path) whose encoder is used
    epochs: int = 100
    batch_size: int = 256
    lr: float = 2e-4
    weight_decay: float = 1e-5
    unfreeze: bool = False
    encoder_lr: float = 2e-4  # only with unfreeze
    augment: bool = True  # only with unfreeze: random mirror and shift of each training image
    val_fraction: float = 0.1
    seed: int = 0
    # The field's tools, all off by default (the report's recipe); a saved config without them
    # loads as the recipe it was.
    schedule: str = "constant"  # any of SCHEDULES; lr and encoder_lr are then the peaks
    label_smoothing: float = 0.0  # share of each target spread evenly over the 10 classes
    mixup: float = 0.0  # alpha of mixup's Beta(alpha, alpha) mixing weight (0: no mixup)
    cutout: int = 0  # only with unfreeze: side of a square erased from each image (0: none)
    ema: float = 0.0  # decay of a moving average of the weights, validated and saved (0: none)
    tta_flip: bool = False  # predict from each image and its mirror (saved with the model)
    # Frozen encoder only: the head trains on codes of mirrored and shifted images, encoded
    # afresh every epoch, instead of the fixed codes of the plain images.
    augment_codes: bool = False


@dataclass(frozen=True)
class TuneConfig:
    """The search of ``fmt ae tune``: what every trial of a study shares.

    Trials differ only in the sampled parameters; ``search`` widens the report's space
    (optimizer, learning rate, weight decay) with more of the recipe.
    """

    study: str
    trials: int = 20  # added by this run; 0 only shows the study
    timeout: float | None = None  # seconds; no new trial starts after it
    epochs: int = 10  # per trial
    latent_dim: int = 16
    val_fraction: float = 0.1
    prune: bool = True
    seed: int = 0
    search: tuple[str, ...] = ()  # any of SEARCH_DIMENSIONS

    def setup(self) -> dict[str, Any]:
        """What must match for trials of the same study to be comparable."""
        return {
            "epochs": self.epochs,
            "latent_dim": self.latent_dim,
            "val_fraction": self.val_fraction,
            "search": sorted(self.search),
            # A study that searched the schedules before onecycle and warmup-cosine existed
            # (constant or cosine, lr up to 1e-3) lacks this key: it is refused, not mixed.
            **({"schedules": list(SCHEDULES)} if "schedule" in self.search else {}),
        }


SEARCH_DIMENSIONS = ("architecture", "batch-size", "schedule")

# The convolutional pair trains faster than the report's MLP at twice its learning rate (the
# DCGAN paper's 2e-4) and needs far fewer epochs; the generator average beat the last step
# from epoch 20 on (measured every 5 epochs: docs/gan.md).
# Every recipe field may be named here (the CLI leaves unset options to it).
DCGAN_DEFAULTS: dict[str, Any] = {"lr": 2e-4, "epochs": 60, "ema": 0.999}


@dataclass(frozen=True)
class GanTrainConfig:
    """The recipe of ``fmt gan train``; the field defaults are the course report's ``mlp``
    recipe, and :meth:`for_architecture` applies the ``dcgan`` one (:data:`DCGAN_DEFAULTS`)."""

    COMMAND: ClassVar[str] = "fmt gan train"  # what trains it: recorded, and checked on --resume

    architecture: str = "mlp"  # or "dcgan"
    latent_size: int = 100
    hidden_size: int = 784  # mlp only
    width: int = 64  # dcgan only: channels next to the image; the middle layer has 2 * width
    epochs: int = 300
    batch_size: int = 64
    lr: float = 1e-4
    beta1: float = 0.5  # Adam's betas for both networks (0.5: the DCGAN paper's choice)
    beta2: float = 0.999
    ema: float = 0.0  # decay of an exponential moving average of the generator (0: none)
    seed: int = 0
    # Added later; their defaults are the recipe of before (what an older config.json means).
    loss: str = "bce"  # one of GAN_LOSSES
    spectral_norm: bool = False  # dcgan only: spectral normalisation in the discriminator
    d_lr: float | None = None  # the discriminator's learning rate (None: lr, as the generator)
    conditional: bool = False  # dcgan only: generator and discriminator take class labels

    @classmethod
    def for_architecture(cls, architecture: str, **settings: Any) -> GanTrainConfig:
        """The recipe of ``architecture``: its defaults, then the ``settings`` that are not None."""
        defaults = DCGAN_DEFAULTS if architecture == "dcgan" else {}
        given = {key: value for key, value in settings.items() if value is not None}
        return cls(architecture=architecture, **{**defaults, **given})

    @property
    def discriminator_lr(self) -> float:
        return self.lr if self.d_lr is None else self.d_lr

    def _classes(self) -> dict[str, int]:
        # Only when conditional: an unconditional spec stays as older toolkits wrote it.
        return {"num_classes": NUM_CLASSES} if self.conditional else {}

    def generator_spec(self) -> ModelSpec:
        size = {"hidden_size": self.hidden_size} if self.architecture == "mlp" else {}
        width = {"width": self.width} if self.architecture == "dcgan" else {}
        params = {"latent_size": self.latent_size, **size, **width, **self._classes()}
        return ModelSpec(kind="generator", architecture=self.architecture, params=params)

    def discriminator_spec(self) -> ModelSpec:
        params: dict[str, Any] = (
            {"hidden_size": self.hidden_size}
            if self.architecture == "mlp"
            else {"width": self.width}
        )
        params.update(self._classes())
        if self.spectral_norm:
            params["spectral_norm"] = True
        return ModelSpec(kind="discriminator", architecture=self.architecture, params=params)


@dataclass(frozen=True)
class GateTrainConfig:
    """The recipe of ``fmt gan gate``: a detector of ``generator``'s samples (against the
    training images) in front of ``denoiser``, so that it cleans only what looks generated."""

    COMMAND: ClassVar[str] = "fmt gan gate"  # what trains it: recorded, and checked on --resume

    generator: str  # store name or path of the generator whose samples are detected
    denoiser: str  # store name or path of the denoiser (or autoencoder) that cleans them
    epochs: int = 2
    batch_size: int = 256
    lr: float = 2e-3
    width: int = 16  # the detector's first channels (then twice as many)
    samples: int = 60_000  # generator samples drawn to train against (a tenth held out)
    val_fraction: float = 0.1
    seed: int = 0
