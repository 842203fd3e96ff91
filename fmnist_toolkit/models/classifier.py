"""Classifiers on an autoencoder's encoder."""

from __future__ import annotations

import math

import torch
from torch import nn

from fmnist_toolkit.models._registry import build_model, register

NUM_CLASSES = 10


@register("classifier", "encoder-mlp")
class EncoderClassifier(nn.Module):
    """The report's classifier: an autoencoder's encoder, then latent → 256 → 256 → 128 → 10
    with ReLU between and a log-softmax output.

    Maps images [N, 1, 28, 28] in [0, 1] to log-probabilities [N, 10]. With ``tta_flip`` it
    predicts in eval mode from each image and its left-right mirror (test-time augmentation:
    the mean of the two probability vectors); training sees single images.
    """

    def __init__(
        self, encoder_architecture: str = "seed", latent_dim: int = 16, tta_flip: bool = False
    ) -> None:
        super().__init__()
        self.encoder_architecture = encoder_architecture
        self.latent_dim = latent_dim
        self.tta_flip = tta_flip
        autoencoder = build_model("autoencoder", encoder_architecture, latent_dim=latent_dim)
        self.encoder = autoencoder.encoder
        # Latent codes can be in the hundreds; the head sees them standardised by fixed
        # statistics of the training codes (set by the recipe, saved with the weights).
        self.register_buffer("code_mean", torch.zeros(latent_dim))
        self.register_buffer("code_std", torch.ones(latent_dim))
        self.head = nn.Sequential(
            nn.Linear(latent_dim, 256),
            nn.ReLU(inplace=True),
            nn.Linear(256, 256),
            nn.ReLU(inplace=True),
            nn.Linear(256, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, NUM_CLASSES),
            nn.LogSoftmax(dim=1),
        )

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images to the encoder's latent codes [N, latent_dim]."""
        return self.encoder(images)

    def standardise(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes as the head sees them."""
        return (codes - self.code_mean) / self.code_std

    def classify_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Latent codes [N, latent_dim] to log-probabilities [N, 10]."""
        return self.head(self.standardise(codes))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The 128 activations before the last layer [N, 128]: the space of Fréchet distances."""
        return self.head[:-2](self.standardise(self.encoder(images)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        log_probs = self.classify_codes(self.encoder(images))
        if self.tta_flip and not self.training:
            mirrored = self.classify_codes(self.encoder(images.flip(-1)))
            return mean_of_probabilities(log_probs, mirrored)
        return log_probs


def mean_of_probabilities(log_probs: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """The log of the mean of two predictions' probabilities, from their log-probabilities."""
    return torch.logaddexp(log_probs, others) - math.log(2.0)
