"""Image augmentation and preprocessing, batched on the training device.

``random_resized_crop`` is open_clip's training augmentation (RandomResizedCrop, scale (0.9, 1.0)
by default in open_clip_train) done for a whole batch with one ``affine_grid``/``grid_sample``.
It supplies the image augmentations Aug(I) of Eq. 3 and the crops of SSLMem (Eq. 1).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

__all__ = ["to_model_input", "random_resized_crop"]

_MEAN = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)


def to_model_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) → float, normalised with open_clip's (OpenAI) mean and std."""
    x = x.float().div_(255)
    return (x - _MEAN.to(x.device)) / _STD.to(x.device)


def random_resized_crop(x: torch.Tensor, generator: torch.Generator, scale=(0.9, 1.0),
                        ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    """One random resized crop per image of a float batch (B, 3, H, W), output at the same size.

    Area fraction ~ U(scale), log aspect ratio ~ U(log ratio), centre uniform where the crop fits;
    draws come from ``generator`` (CPU) so a run repeats exactly and f/g can share them.
    """
    b = x.shape[0]
    u = torch.rand(b, 4, generator=generator)
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    logr = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]
    w = torch.sqrt(area * torch.exp(logr)).clamp(max=1.0)
    h = torch.sqrt(area / torch.exp(logr)).clamp(max=1.0)
    cx = (1 - w) * (2 * u[:, 2] - 1)
    cy = (1 - h) * (2 * u[:, 3] - 1)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, cx, h, cy
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
