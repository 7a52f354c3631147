"""Image quality metrics: reconstruction error, and FID/KID on Inception-v3 features.

FID (Heusel et al. 2017) is the Fréchet distance between Gaussians fitted to the 2048-d pool
features of generated and reference images; KID (Bińkowski et al. 2018) the unbiased squared MMD
between them with the kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets. Both use
torchvision's ImageNet Inception-v3 (``inception_v3_google-0cc3c7bd.pth``), never downloaded by
polyvae: it must be on disk, at ``POLYVAE_INCEPTION_WEIGHTS`` or in torch's hub cache, where
torchvision keeps it once downloaded. These are not the TensorFlow FID network's weights that
papers use, so the numbers compare polyvae runs with each other, not with published FIDs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg

from polyvae.errors import UserError
from polyvae.plugins.images.reader import Image

INCEPTION_ENV = "POLYVAE_INCEPTION_WEIGHTS"
INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --- reconstruction ------------------------------------------------------------------------------


def reconstruction_errors(
    originals: Sequence[Image], reconstructions: Sequence[Image]
) -> dict[str, float]:
    """Mean squared and absolute error per pixel (intensities on [0, 1]) and the PSNR in dB of
    the pooled squared error (capped at 100 dB for identical images)."""
    if len(originals) != len(reconstructions):
        raise ValueError(f"{len(originals)} originals but {len(reconstructions)} reconstructions")
    if not originals:
        return {}
    a = np.stack([np.asarray(image.pixels, dtype=np.float64) for image in originals]) / 255.0
    b = np.stack([np.asarray(image.pixels, dtype=np.float64) for image in reconstructions]) / 255.0
    if a.shape != b.shape:
        raise ValueError(f"originals are {a.shape[1:]}, reconstructions {b.shape[1:]}")
    mse = float(np.mean((a - b) ** 2))
    return {
        "reconstruction_mse": mse,
        "reconstruction_mae": float(np.mean(np.abs(a - b))),
        "reconstruction_psnr": 10 * math.log10(1.0 / max(mse, 1e-10)),
    }


# --- FID and KID ---------------------------------------------------------------------------------


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2)
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():  # singular product: nudge both diagonals
        offset = np.eye(len(sigma1)) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)
    return float(max(value, 0.0))


def fid_from_features(generated: np.ndarray, reference: np.ndarray) -> float:
    if len(generated) < 2 or len(reference) < 2:
        raise ValueError("FID needs at least 2 feature vectors on each side")
    return frechet_distance(
        generated.mean(0),
        np.cov(generated, rowvar=False),
        reference.mean(0),
        np.cov(reference, rowvar=False),
    )


def polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between samples ``x`` and ``y`` with k(a, b) = (a.b / d + 1)^3."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    m, n, d = len(x), len(y), x.shape[1]
    if m < 2 or n < 2:
        raise ValueError("KID needs at least 2 feature vectors on each side")
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    within_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(within_x + within_y - 2 * kxy.mean())


def kid_from_features(
    generated: np.ndarray,
    reference: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Mean and standard deviation of the MMD^2 over ``subsets`` random subsets."""
    size = min(subset_size, len(generated), len(reference))
    rng = np.random.default_rng(seed)
    values = [
        polynomial_mmd2(
            generated[rng.choice(len(generated), size, replace=False)],
            reference[rng.choice(len(reference), size, replace=False)],
        )
        for _ in range(subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


def inception_weights_path(path: str | Path | None = None) -> Path | None:
    """The Inception-v3 weights file: ``path``, else ``$POLYVAE_INCEPTION_WEIGHTS``, else
    torchvision's copy in torch's hub cache; None when none of these exists."""
    candidates = [path, os.environ.get(INCEPTION_ENV)]
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE)
    for candidate in candidates:
        if candidate and Path(candidate).expanduser().is_file():
            return Path(candidate).expanduser()
    return None


def missing_weights_message(path: str | Path | None = None) -> str:
    where = (
        f"{path}" if path else f"${INCEPTION_ENV} or {Path(torch.hub.get_dir()) / 'checkpoints'}"
    )
    return (
        f"FID/KID not computed: no Inception-v3 weights at {where}; put torchvision's "
        f"{INCEPTION_FILE} there (or point {INCEPTION_ENV} at it)"
    )


class InceptionFeatures:
    """2048-d pool features of torchvision's Inception-v3, loaded from a local weights file."""

    def __init__(self, weights: str | Path | None = None, device: str = "cpu") -> None:
        found = inception_weights_path(weights)
        if found is None:
            raise UserError(missing_weights_message(weights))
        from torchvision.models import inception_v3

        model = inception_v3(weights=None, aux_logits=True, init_weights=False)
        if found.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(found))
        else:
            state = torch.load(found, map_location="cpu", weights_only=True)
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            first = str(error).splitlines()[0]
            raise UserError(f"{found} does not hold Inception-v3 weights: {first}") from None
        model.fc = torch.nn.Identity()
        self.model = model.eval().to(device)
        self.device = device

    @torch.no_grad()
    def __call__(self, images: Sequence[Image], batch_size: int = 50) -> np.ndarray:
        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        features = []
        for start in range(0, len(images), batch_size):
            part = images[start : start + batch_size]
            array = np.stack([image.pixels for image in part]).transpose(0, 3, 1, 2)
            x = torch.from_numpy(array).float().to(self.device) / 255.0
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            x = F.interpolate(x, size=(299, 299), mode="bilinear", antialias=True)
            features.append(self.model((x - mean) / std).double().cpu().numpy())
        return np.concatenate(features) if features else np.zeros((0, 2048))


def fid_kid(
    generated: Sequence[Image], reference: Sequence[Image], weights: str | Path | None = None
) -> dict[str, float]:
    """FID and KID (mean and standard deviation over subsets) of ``generated`` against
    ``reference``; a UserError when the Inception weights are not on disk."""
    network = InceptionFeatures(weights)
    ours, theirs = network(list(generated)), network(list(reference))
    kid, kid_std = kid_from_features(ours, theirs)
    return {"fid": fid_from_features(ours, theirs), "kid": kid, "kid_std": kid_std}
