"""On a CUDA device (skipped elsewhere; marker gpu): the world model loaded there predicts what it
predicts on the CPU."""

import numpy as np
import pytest
import torch

from roboscape_r_ros.config import load_config
from roboscape_r_ros.devices import torch_device
from roboscape_r_ros.world_model import WorldModel, WorldModelConfig

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


def test_the_world_model_on_cuda_gives_the_cpu_done_probabilities(tmp_path):
    cfg = load_config(WorldModelConfig, "world_model", "tiny", [])
    torch.manual_seed(0)
    WorldModel(cfg).save(tmp_path / "wm.safetensors")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 4, cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
    actions = rng.uniform(-1, 1, (2, 3, cfg.action_dim)).astype(np.float32)
    probabilities = {}
    for device in ("cpu", "cuda"):
        wm = WorldModel.from_checkpoint(tmp_path / "wm.safetensors", device=torch_device(device)).eval()
        with torch.no_grad():
            probabilities[device] = wm.done_probability(frames, actions).float().cpu().numpy()
    assert np.allclose(probabilities["cpu"], probabilities["cuda"], atol=1e-3), probabilities
