"""Batched image augmentation that runs wherever the data lives (GPU or CPU).

Crop/flip and mixup/cutmix work on whole float batches (B, C, H, W) with
per-sample randomness drawn from an explicit generator, so the data never
leaves the device and a resumed run can restore the exact random stream.
Batch-level choices (the mixup/cutmix coefficient and mode) come from a numpy
Generator so they never force a device sync. The learned policies
(AutoAugment, RandAugment, TrivialAugment) are torchvision's, applied to
groups of a uint8 batch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

POLICIES = ("none", "autoaugment", "randaugment", "trivialaugment")

Tensor = torch.Tensor

# Per-channel statistics of the CIFAR-10 training set.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def normalize(images: Tensor) -> Tensor:
    """uint8 (B, 3, H, W) -> float (B, 3, H, W), standardised with the CIFAR-10 statistics."""
    mean = torch.tensor(CIFAR_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def random_crop_flip(x: Tensor, padding: int, generator: torch.Generator, flip: bool = True) -> Tensor:
    """Per-sample random crop of the zero-padded image (as torchvision's RandomCrop) and horizontal flip.

    x (B, C, H, W) float; zero padding of a normalised image is the mean colour.
    """
    B, C, H, W = x.shape
    dev = x.device
    if padding > 0:
        xp = F.pad(x, (padding, padding, padding, padding))
        oy = torch.randint(0, 2 * padding + 1, (B,), device=dev, generator=generator)
        ox = torch.randint(0, 2 * padding + 1, (B,), device=dev, generator=generator)
        rows = (oy[:, None] + torch.arange(H, device=dev))[:, None, :, None]  # (B, 1, H, 1)
        cols = (ox[:, None] + torch.arange(W, device=dev))[:, None, None, :]  # (B, 1, 1, W)
        x = xp[torch.arange(B, device=dev)[:, None, None, None], torch.arange(C, device=dev)[None, :, None, None],
               rows, cols]
    if flip:
        do_flip = torch.rand(B, device=dev, generator=generator) < 0.5
        x = torch.where(do_flip[:, None, None, None], x.flip(3), x)
    return x


def make_policy(name: str):
    """torchvision's policy transform for ``name`` (one of POLICIES); None for "none".

    AutoAugment uses its CIFAR-10 policy, the one behind the published ViT-Lite
    and plain-ViT CIFAR-10 results; RandAugment runs torchvision's defaults
    (2 ops at magnitude 9).
    """
    if name == "none":
        return None
    if name == "autoaugment":
        return v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    if name == "randaugment":
        return v2.RandAugment()
    if name == "trivialaugment":
        return v2.TrivialAugmentWide()
    raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {name!r}")


def apply_policy(images: Tensor, policy, groups: int) -> Tensor:
    """Apply ``policy`` to uint8 images (B, C, H, W), with independent draws for ``groups`` groups.

    torchvision's batched call draws one operation and magnitude for the whole
    batch; splitting the batch gives that many independent draws per step while
    keeping the launch count (and so the step time) small. The draws come from
    torch's global CPU generator, which the trainer seeds and saves with its
    resume state.
    """
    if policy is None:
        return images
    return torch.cat([policy(chunk) for chunk in images.chunk(max(1, int(groups)))])


def policy_batch(images: Tensor, idx: Tensor, policy, groups: int, stream=None) -> Tensor:
    """``apply_policy(images[idx], ...)``, on ``stream`` (a side CUDA stream) when one is given.

    torchvision copies each affine matrix and fill value to the GPU, and such a
    copy waits for all the work queued on its stream. On the training stream
    that would stall the step several times per batch; on a side stream it
    waits only for the policy's own small kernels. The training stream then
    waits for the result on the GPU, not on the host.
    """
    if policy is None or stream is None:
        return apply_policy(images[idx], policy, groups)
    main = torch.cuda.current_stream(images.device)
    with torch.cuda.stream(stream):  # images and idx were ready before this step was queued
        out = apply_policy(images[idx], policy, groups)
    main.wait_stream(stream)
    out.record_stream(main)  # its memory is not reused until the training stream is done with it
    return out


def mix_batch(x: Tensor, y: Tensor, num_classes: int, mixup_alpha: float, cutmix_alpha: float,
              rng: np.random.Generator, label_smoothing: float = 0.0, prob: float = 1.0) -> tuple[Tensor, Tensor]:
    """Mixup or CutMix (timm's batch mode): pair each sample with the batch reversed.

    Returns the mixed images and soft targets (B, num_classes) that already include
    label smoothing. With both alphas > 0 each batch picks one of the two at random.
    With ``prob`` < 1 a batch is mixed only with that probability (one extra draw;
    none at prob 1, so the random stream of a run that always mixes is unchanged).
    """
    off = label_smoothing / num_classes
    target = F.one_hot(y, num_classes).float() * (1.0 - label_smoothing) + off
    if prob <= 0 or (prob < 1 and rng.random() >= prob):
        return x, target
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or rng.random() < 0.5)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    if alpha <= 0:
        return x, target
    lam = float(rng.beta(alpha, alpha))
    if use_cutmix:
        H, W = x.shape[-2:]
        cut = math.sqrt(1.0 - lam)
        ch, cw = int(H * cut), int(W * cut)
        cy, cx = int(rng.integers(H)), int(rng.integers(W))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, H)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, W)
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = x.flip(0)[:, :, y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (H * W)  # the area actually pasted
    else:
        x = x * lam + x.flip(0) * (1.0 - lam)
    return x, target * lam + target.flip(0) * (1.0 - lam)
