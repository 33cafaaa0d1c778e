"""The vision-only baselines of Sec. 4.5, built on exactly CLIP's image tower (open_clip's
VisionTransformer of the same config): a self-supervised encoder trained with DINO (Caron et al., 2021)
and a supervised multi-label classifier.  With them, SSLMem and UnitMem place CLIP between supervised
and self-supervised learning (Fig. 4, claim 8).  A single-label softmax classifier on the same tower
(:func:`train_classifier`, kept with its head) gives the P(y | x) of Feldman's label memorisation (Fig. 8).

DINO uses lightly's ``DINOProjectionHead`` and ``DINOLoss`` (centring and sharpening), an EMA teacher
with a cosine momentum schedule, and multi-crop.  One simplification, stated: open_clip's ViT has fixed
positional embeddings, so local crops are resampled to the full input size instead of 96 px.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .augment import random_resized_crop, to_model_input
from .data import ImageSource, PairData
from .engine import fit_epochs
from .models import create_model, image_size
from .runtime import resolve_device, timed

__all__ = ["VisionConfig", "vision_tower", "Encoder", "Classifier", "train_dino", "train_supervised",
           "train_classifier", "first_level_targets", "teacher_momentum"]


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """Training options of the DINO and supervised baselines (run-store keys)."""

    epochs: int = 80
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.04
    warmup: float = 0.05
    n_local: int = 4                       # DINO local crops (besides 2 global ones)
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    out_dim: int = 1024                    # DINO prototypes
    teacher_temp: float = 0.04
    momentum: tuple[float, float] = (0.996, 1.0)
    crop_scale: tuple[float, float] = (0.9, 1.0)  # the supervised models' augmentation (as CLIP's)
    seed: int = 0


def vision_tower(model: str, seed: int = 0) -> torch.nn.Module:
    """CLIP's image tower for config ``model``, freshly initialised (``pretrained=None``)."""
    return create_model(model, seed=seed).visual


class Encoder(torch.nn.Module):
    """An image tower seen through CLIP's interface (``visual``, ``encode_image``), so
    :func:`~clipmem_lib.embed.embed_images` and the UnitMem hooks treat all three models alike."""

    def __init__(self, tower: torch.nn.Module):
        super().__init__()
        self.visual = tower

    def encode_image(self, x, normalize: bool = False):
        z = self.visual(x)
        return F.normalize(z, dim=-1) if normalize else z


class Classifier(Encoder):
    """An image tower with its linear head (:func:`train_classifier`): ``encode_image`` gives the tower's
    features as :class:`Encoder` does (probes, UnitMem), ``class_probs`` the softmax P(y | x) of Fig. 8."""

    def __init__(self, tower: torch.nn.Module, head: torch.nn.Linear):
        super().__init__(tower)
        self.head = head

    @classmethod
    def untrained(cls, tower: torch.nn.Module, n_classes: int) -> "Classifier":
        """``tower`` with a fresh head of ``n_classes`` outputs (the shape a stored classifier loads into)."""
        return cls(tower, torch.nn.Linear(tower.output_dim, n_classes))

    def forward(self, x):
        return self.head(self.visual(x))

    def class_probs(self, x) -> torch.Tensor:
        """(B, C) class probabilities, float32."""
        return self.forward(x).float().softmax(-1)


def first_level_targets(data: PairData) -> tuple[np.ndarray, list[str]]:
    """Multi-hot (N, C) first-level labels for the supervised baseline: COCO's object supercategories
    (``meta['first_level']``, from the instances file) or, for the built-in scenes, which colours appear."""
    if "first_level" in data.meta:
        present = [set(filter(None, str(v).split("|"))) for v in data.meta["first_level"]]
    elif "description" in data.meta:
        present = [{o["colour"] for o in json.loads(d)["objects"]} for d in data.meta["description"]]
    else:
        raise ValueError(f"{data.name}: the supervised model needs first-level labels: COCO's instances file "
                         "(annotations/instances_train2017.json) or the built-in scenes")
    names = sorted(set().union(*present))
    y = np.zeros((len(present), len(names)), dtype=np.float32)
    for i, labels in enumerate(present):
        y[i, [names.index(c) for c in labels]] = 1
    return y, names


def _fit(state, params, images: ImageSource, indices, cfg: VisionConfig, step, *, size, device, checkpoint,
         progress, num_workers, desc, after_step=None, on_epoch_end=None) -> list[dict]:
    """The engine over plain images: each step gets (uint8 images, their indices)."""
    idx = np.asarray(indices, dtype=np.int64)

    def epoch_specs(_epoch, order):
        return [idx[order[s * cfg.batch_size:(s + 1) * cfg.batch_size]] for s in range(len(idx) // cfg.batch_size)]

    return fit_epochs(state, params, cfg, len(idx), epoch_specs, lambda b: (images.batch(b, [0] * len(b), size), b),
                      step, device=device, checkpoint=checkpoint, progress=progress, num_workers=num_workers,
                      desc=desc, after_step=after_step, on_epoch_end=on_epoch_end)


def teacher_momentum(step: int, total: int, momentum=(0.996, 1.0)) -> float:
    """DINO's EMA momentum: cosine from ``momentum[0]`` at step 0 up to ``momentum[1]`` at the end."""
    return momentum[1] - (momentum[1] - momentum[0]) * (math.cos(math.pi * step / total) + 1) / 2


@timed("training")
def train_dino(tower: torch.nn.Module, images: ImageSource, indices: Sequence[int], cfg: VisionConfig = VisionConfig(),
               *, device=None, checkpoint=None, progress: bool = True, num_workers: int = 0, desc: str = "dino",
               on_epoch_end: Callable[[int], None] | None = None) -> list[dict]:
    """Train ``tower`` in place with DINO on ``images[indices]``; the student tower is what is kept.
    With ``checkpoint``, student, teacher and the loss's centre are saved every epoch and a run resumes."""
    from lightly.loss import DINOLoss
    from lightly.models.modules import DINOProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum

    device = resolve_device(device)
    torch.manual_seed(cfg.seed)
    dim = tower.output_dim
    head = DINOProjectionHead(dim, 4 * dim, min(256, dim), cfg.out_dim)
    t_head = DINOProjectionHead(dim, 4 * dim, min(256, dim), cfg.out_dim)  # built fresh: deepcopy fails
    t_head.load_state_dict(head.state_dict())
    t_tower = copy.deepcopy(tower)  # the EMA teacher starts equal to the student
    for m in (t_tower, t_head):
        deactivate_requires_grad(m)
    student, teacher = torch.nn.Sequential(tower, head).to(device), torch.nn.Sequential(t_tower, t_head).to(device)
    student.train(), teacher.train()
    loss_fn = DINOLoss(cfg.out_dim, warmup_teacher_temp=cfg.teacher_temp, teacher_temp=cfg.teacher_temp,
                       warmup_teacher_temp_epochs=0).to(device)
    size = image_size(tower)

    def step(batch, gen, epoch, s, total):
        x = to_model_input(batch[0].to(device))
        update_momentum(student, teacher, teacher_momentum(s, total, cfg.momentum))
        glob = [random_resized_crop(x, gen, cfg.global_scale) for _ in range(2)]
        local = [random_resized_crop(x, gen, cfg.local_scale) for _ in range(cfg.n_local)]
        with torch.no_grad():  # every view of a kind in one forward: no batch statistics, fewer, larger kernels
            t_out = teacher(torch.cat(glob)).float().chunk(len(glob))
        s_out = student(torch.cat(glob + local)).float().chunk(len(glob) + len(local))
        return loss_fn(list(t_out), list(s_out), epoch=epoch), {}

    hist = _fit({"student": student, "teacher": teacher, "loss": loss_fn}, student, images, indices, cfg, step,
                size=size, device=device, checkpoint=checkpoint, progress=progress, num_workers=num_workers, desc=desc,
                on_epoch_end=on_epoch_end)
    tower.eval()
    return hist


def _train_with_head(tower: torch.nn.Module, n_out: int, images: ImageSource, indices, cfg: VisionConfig, loss, *,
                     device, **fit_kw) -> tuple[torch.nn.Linear, list[dict]]:
    """Train ``tower`` in place with a fresh linear head of ``n_out`` outputs on random resized crops
    (``cfg.crop_scale``) of ``images[indices]``; ``loss(logits, data indices)`` scores a batch.
    Returns the trained head and the history."""
    device = resolve_device(device)
    torch.manual_seed(cfg.seed)
    head = torch.nn.Linear(tower.output_dim, n_out)
    model = torch.nn.Sequential(tower, head).to(device).train()

    def step(batch, gen, _epoch, _s, _total):
        x, idx = to_model_input(batch[0].to(device)), batch[1]
        return loss(model(random_resized_crop(x, gen, cfg.crop_scale)).float(), torch.as_tensor(idx)), {}

    hist = _fit({"model": model}, model, images, indices, cfg, step, size=image_size(tower), device=device, **fit_kw)
    model.eval()
    return head, hist


@timed("training")
def train_supervised(tower: torch.nn.Module, images: ImageSource, indices: Sequence[int], targets: np.ndarray,
                     cfg: VisionConfig = VisionConfig(), *, device=None, checkpoint=None, progress: bool = True,
                     num_workers: int = 0, desc: str = "supervised",
                     on_epoch_end: Callable[[int], None] | None = None) -> list[dict]:
    """Train ``tower`` in place with a linear multi-label head (BCE) on ``targets[indices]`` (N, C)."""
    y_all = torch.as_tensor(targets, dtype=torch.float32)

    def bce(logits, idx):
        return F.binary_cross_entropy_with_logits(logits, y_all[idx].to(logits.device))

    _, hist = _train_with_head(tower, targets.shape[1], images, indices, cfg, bce, device=device, checkpoint=checkpoint,
                               progress=progress, num_workers=num_workers, desc=desc, on_epoch_end=on_epoch_end)
    return hist


@timed("training")
def train_classifier(tower: torch.nn.Module, images: ImageSource, indices: Sequence[int], labels: np.ndarray,
                     cfg: VisionConfig = VisionConfig(), *, n_classes: int | None = None, device=None, checkpoint=None,
                     progress: bool = True, num_workers: int = 0, desc: str = "classifier",
                     on_epoch_end: Callable[[int], None] | None = None) -> tuple[Classifier, list[dict]]:
    """Train ``tower`` in place with a linear single-label head (softmax cross-entropy) on
    ``labels[indices]`` (``labels``: (N,) ints over the whole data, flips included), over ``n_classes``
    classes (default ``labels.max() + 1``): Fig. 8's supervised model.  Augmentation and schedule are
    :func:`train_supervised`'s.  Returns the :class:`Classifier` (the trained tower and head) and the history."""
    y_all = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    n_classes = int(y_all.max()) + 1 if n_classes is None else int(n_classes)
    if y_all.ndim != 1 or y_all.min() < 0 or y_all.max() >= n_classes:
        raise ValueError(f"labels must be a 1-d array of class ids in [0, {n_classes}), got shape "
                         f"{tuple(y_all.shape)}, range [{int(y_all.min())}, {int(y_all.max())}]")

    def cross_entropy(logits, idx):
        return F.cross_entropy(logits, y_all[idx].to(logits.device))

    head, hist = _train_with_head(tower, n_classes, images, indices, cfg, cross_entropy, device=device,
                                  checkpoint=checkpoint, progress=progress, num_workers=num_workers, desc=desc,
                                  on_epoch_end=on_epoch_end)
    return Classifier(tower, head).eval(), hist
