"""Perceptual distance backends and image metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from roboscape_r_ros.perception import PerceptionConfig, WeightsError, make_distance, psnr, ssim
from roboscape_r_ros.perception.effnet import load_efficientnet_lite0, wheel_weights
from roboscape_r_ros.perception.lpips import ALEXNET_FILE, CHANNELS, LINEAR_FILE, alexnet_features


def scenes(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """uint8 [n,size,size,3]: coloured rectangles on a smooth gradient."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size)
    frames = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        base = (60 + 120 * ramp[:, None, None] * rng.uniform(0, 1, 3)).repeat(size, 1)
        for _ in range(4):
            x, y = rng.integers(0, size - 12, 2)
            w, h = rng.integers(6, 20, 2)
            base[y : y + h, x : x + w] = rng.uniform(0, 255, 3)
        frames[i] = base.astype(np.uint8)
    return frames


def corrupt(frames: np.ndarray, sigma: float) -> np.ndarray:
    noise = np.random.default_rng(1).normal(0, sigma, frames.shape)
    return np.clip(frames + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def effnet():
    torch.manual_seed(0)
    return make_distance(PerceptionConfig(backend="effnet"))


def test_effnet_weights_load_strictly():
    state = torch.load(wheel_weights(), map_location="cpu", weights_only=True)
    net = load_efficientnet_lite0()
    assert set(net.state_dict()) == set(state)  # and load_state_dict(strict=True) succeeded


def test_foreign_effnet_weights_raise_naming_the_file(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"_conv_stem.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match=str(path)):
        load_efficientnet_lite0(path)


@pytest.mark.parametrize("backend", ["effnet", "ssim"])
def test_distance_is_zero_for_identical_frames_and_grows_with_corruption(backend, effnet):
    distance = effnet if backend == "effnet" else make_distance(PerceptionConfig(backend="ssim"))
    frames = scenes(6)
    d = [distance(frames, frames)] + [distance(corrupt(frames, s), frames) for s in (8, 24, 64)]
    means = [x.mean().item() for x in d]
    print(f"{backend}: distance at noise sigma 0/8/24/64: {[round(m, 3) for m in means]}")
    assert torch.allclose(d[0], torch.zeros(6), atol=1e-5)
    assert all((x >= -1e-6).all() and (x <= 1).all() for x in d)
    assert all((later > earlier).all() for earlier, later in zip(d, d[1:]))


def test_goal_features_broadcast_and_are_reusable(effnet):
    frames, goal = scenes(4), scenes(1, seed=5)
    direct = effnet(frames, np.repeat(goal, 4, 0))
    cached = effnet.compare(effnet.embed(frames), effnet.embed(goal))  # goal embedded once
    assert torch.allclose(direct, cached, atol=1e-5)
    assert direct.shape == (4,) and (direct > 0.05).all()


def test_lpips_without_weights_names_the_missing_files(tmp_path):
    (tmp_path / LINEAR_FILE).write_bytes(b"")
    with pytest.raises(WeightsError, match=ALEXNET_FILE) as err:
        make_distance(PerceptionConfig(backend="lpips", lpips_dir=str(tmp_path)))
    assert str(tmp_path) in str(err.value) and LINEAR_FILE not in str(err.value).split("(")[0]


def test_lpips_loads_weight_files_of_the_published_layout(tmp_path):
    torch.manual_seed(0)
    alexnet = {f"features.{k}": v for k, v in alexnet_features().state_dict().items()}
    torch.save({**alexnet, "classifier.1.weight": torch.zeros(4096, 9216)}, tmp_path / ALEXNET_FILE)
    linear = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(CHANNELS)}
    torch.save(linear, tmp_path / LINEAR_FILE)
    lpips = make_distance(PerceptionConfig(backend="lpips", lpips_dir=str(tmp_path)))
    frames = scenes(3)
    assert torch.allclose(lpips(frames, frames), torch.zeros(3), atol=1e-6)
    assert (lpips(corrupt(frames, 40), frames) > 0).all()


def test_psnr_and_ssim_on_known_inputs():
    a = np.full((2, 32, 32, 3), 100, np.uint8)
    b = a + 10
    assert torch.allclose(psnr(a, b), torch.full((2,), 20 * np.log10(255 / 10)))
    assert torch.isinf(psnr(a, a)).all()
    c1 = (0.01 * 255) ** 2  # constant images: SSIM is the luminance term alone
    assert torch.allclose(ssim(a, b), torch.full((2,), (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)), atol=1e-4)
    frames = scenes(2)
    assert torch.allclose(ssim(frames, frames), torch.ones(2))
    assert (ssim(corrupt(frames, 30), frames) < 0.9).all()
