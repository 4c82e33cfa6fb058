"""Frame tokenizer: convolutional autoencoder with finite scalar quantization (FSQ).

A frame uint8 [H,W,3] becomes [H/8, W/8] token ids in [0, prod(levels)). Each latent channel c is
squashed to (-L_c/2, L_c/2) and rounded (straight-through gradient), so the codebook is the grid
of all level combinations: no codebook collapse, no commitment loss (Mentzer et al., 2023).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from roboscape_r_ros.profiling import label
from roboscape_r_ros.world_model.config import TokenizerConfig


class FSQ(nn.Module):
    levels: torch.Tensor  # buffers (register_buffer)
    basis: torch.Tensor

    def __init__(self, levels: list[int]):
        super().__init__()
        levels_t = torch.tensor(levels, dtype=torch.int64)
        basis = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.int64), levels_t[:-1]]), 0)
        self.register_buffer("levels", levels_t, persistent=False)
        self.register_buffer("basis", basis, persistent=False)
        self.codebook_size = math.prod(levels)

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """z [...,d] real -> codes [...,d] in [-1,1] on the level grid, straight-through."""
        levels = self.levels.to(z.dtype)
        half = (levels - 1) * (1 - 1e-3) / 2
        offset = (self.levels % 2 == 0).to(z.dtype) * 0.5  # even levels: grid is shifted by a half
        bounded = torch.tanh(z + torch.atanh(offset / half)) * half - offset
        rounded = bounded + (bounded.round() - bounded).detach()
        return rounded / (self.levels // 2).to(z.dtype)

    def codes_to_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [...,d] on the grid -> ids [...] int64."""
        digits = (codes * (self.levels // 2)).round().long() + self.levels // 2
        return (digits * self.basis).sum(-1)

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [...] int64 -> codes [...,d] in [-1,1]."""
        digits = (ids[..., None] // self.basis) % self.levels
        return (digits - self.levels // 2).float() / (self.levels // 2)


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.GroupNorm(8, ch),
            nn.SiLU(),
            nn.Conv2d(ch, ch, 3, padding=1),
            nn.GroupNorm(8, ch),
            nn.SiLU(),
            nn.Conv2d(ch, ch, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


def _encoder(cfg: TokenizerConfig) -> nn.Sequential:
    """uint8-normalised [N,3,H,W] -> latents [N,d,H/8,W/8]; residual blocks only below full resolution."""
    layers: list[nn.Module] = [nn.Conv2d(3, cfg.channels[0], 3, padding=1)]
    for c_in, c_out in zip(cfg.channels, cfg.channels[1:] + [cfg.channels[-1]]):
        layers.append(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1))  # /2
        layers += [ResBlock(c_out) for _ in range(cfg.res_blocks)]
    layers += [nn.GroupNorm(8, cfg.channels[-1]), nn.SiLU(), nn.Conv2d(cfg.channels[-1], len(cfg.levels), 1)]
    return nn.Sequential(*layers)


def _decoder(cfg: TokenizerConfig) -> nn.Sequential:
    """Codes [N,d,h,w] -> images [N,3,8h,8w], mirroring the encoder."""
    ch = cfg.channels[::-1]
    layers: list[nn.Module] = [nn.Conv2d(len(cfg.levels), ch[0], 3, padding=1)]
    for c_in, c_out in zip([ch[0]] + ch[:-1], ch):
        layers += [ResBlock(c_in) for _ in range(cfg.res_blocks)]
        layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))  # x2
    layers += [nn.GroupNorm(8, ch[-1]), nn.SiLU(), nn.Conv2d(ch[-1], 3, 3, padding=1)]
    return nn.Sequential(*layers)


def hold_static_tokens(tokens: torch.Tensor, frames: torch.Tensor, threshold: int) -> torch.Tensor:
    """Token ids [...,T,h,w] of consecutive frames uint8 [...,T,H,W,3] -> ids where every patch whose
    pixels stayed within `threshold` (0-255, every channel) of the frame its token was taken from keeps
    that token.

    The encoder sees neighbouring patches, so a static patch beside the moving arm re-quantises to
    another id from frame to frame: measured on Meta-World at 64 px, 35% of the ids change per
    world-model step while 14% of the 8x8 patches change by more than 5/255. Holding the ids of static
    patches leaves the dynamics only the real motion to predict. threshold < 0 returns the ids as given.
    """
    if threshold < 0 or tokens.shape[-3] < 2:
        return tokens
    h, w = tokens.shape[-2:]
    ph, pw = frames.shape[-3] // h, frames.shape[-2] // w
    frames = frames.to(torch.int16)
    held = [tokens[..., 0, :, :]]
    anchor = frames[..., 0, :, :, :]  # per pixel: the frame that the held token of its patch came from
    for t in range(1, tokens.shape[-3]):
        diff = (frames[..., t, :, :, :] - anchor).abs().amax(-1)  # [...,H,W]
        moved = diff.unflatten(-1, (w, pw)).unflatten(-3, (h, ph)).amax((-3, -1)) > threshold  # [...,h,w]
        held.append(torch.where(moved, tokens[..., t, :, :], held[-1]))
        moved_px = moved.repeat_interleave(ph, -2).repeat_interleave(pw, -1)[..., None]  # [...,H,W,1]
        anchor = torch.where(moved_px, frames[..., t, :, :, :], anchor)
    return torch.stack(held, -3)


def channels_first(x: torch.Tensor) -> torch.Tensor:
    """[...,H,W,C] -> [...,C,H,W]. Dims counted from the front: torch's ONNX exporter copies a negative
    source dim of movedim into the Transpose as it is, which ONNX Runtime rejects."""
    return x.movedim(x.dim() - 1, x.dim() - 3)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """[...,C,H,W] -> [...,H,W,C] (see channels_first)."""
    return x.movedim(x.dim() - 3, x.dim() - 1)


def to_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [...,H,W,3] -> float [...,3,H,W] in [-1,1]."""
    return channels_first(frames).float() / 127.5 - 1


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [...,3,H,W] in [-1,1] -> uint8 [...,H,W,3]."""
    return channels_last(((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))


class Tokenizer(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        if len(cfg.channels) != 3:
            raise ValueError(f"tokenizer.channels must list 3 stage widths (8x downsampling), got {cfg.channels}")
        self.encoder = _encoder(cfg)
        self.decoder = _decoder(cfg)
        self.fsq = FSQ(cfg.levels)
        self.vocab_size = self.fsq.codebook_size

    def _encode_codes(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [...,H,W,3] -> codes [...,h,w,d]."""
        lead = frames.shape[:-3]
        with label("tokenizer.encode"):
            z = self.encoder(to_unit(frames.reshape(-1, *frames.shape[-3:])))  # [N,d,h,w]
            codes = self.fsq.quantize(channels_last(z.float()))  # [N,h,w,d], fp32 even under autocast
        return codes.reshape(*lead, *codes.shape[1:])

    def _decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [...,h,w,d] -> images [...,3,H,W] in [-1,1] (unclamped)."""
        lead = codes.shape[:-3]
        with label("tokenizer.decode"):
            images = self.decoder(channels_first(codes.reshape(-1, *codes.shape[-3:])))  # [N,3,H,W]
        return images.reshape(*lead, *images.shape[1:])

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames [...,H,W,3] -> token ids int64 [...,h,w]."""
        return self.fsq.codes_to_ids(self._encode_codes(frames))

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """token ids [...,h,w] -> float frames [...,3,H,W] in [-1,1]."""
        return self._decode_codes(self.fsq.ids_to_codes(ids)).clamp(-1, 1)

    def loss(self, frames: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Reconstruction MSE (in [-1,1] units) of uint8 frames [...,H,W,3].

        Plain MSE on purpose: an added L1 term (median-seeking) kept small objects on a static
        background blurred into the background for much longer.
        """
        target = to_unit(frames)
        mse = F.mse_loss(self._decode_codes(self._encode_codes(frames)).float(), target)
        psnr = 10 * torch.log10(4 / mse.detach().clamp_min(1e-10))  # peak-to-peak 2 in [-1,1] units
        return mse, {"loss": mse.item(), "psnr": psnr.item()}
