"""`roboscape-r export world_model=<run>`: the world-model pieces the dreamer and reward_publisher run, as ONNX
files that dream what torch dreams on real frames, carry their metadata, and are refused (nothing written)
when they do not match torch."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from helpers.cli_runner import assert_one_line_error, cli
from helpers.toy_world import train_toy_world_model
from roboscape_r_ros.config import load_config
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.export.graph import ExportError, sha256
from roboscape_r_ros.export.world_model import export_world_model
from roboscape_r_ros.perception.distance import normalized_feature_distance
from roboscape_r_ros.perception.effnet import EffNetDistance
from roboscape_r_ros.world_model import WorldModel, WorldModelConfig
from roboscape_r_ros.world_model.rollout import gather, rollout, spread_windows

# Each test here runs on a model or a run trained for the module (seconds to a minute on 2 cores).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("wm_export")
    dataset, run = train_toy_world_model(root)
    return dataset, run, export_world_model(run, root / "onnx", perceptual_resolution=32)


def sessions(result) -> dict[str, ort.InferenceSession]:
    return {
        piece: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for piece, path in result.files.items()
    }


def test_the_onnx_pieces_dream_what_torch_dreams_on_held_out_episodes(trained):
    dataset, run, result = trained
    assert sorted(result.files) == ["context", "decode", "effnet", "encode", "step"]
    assert "windows of dataset" in result.parity_inputs
    for piece, diffs in result.max_abs_diff.items():
        assert all(d <= (1.0 if name == "frames" else 1e-4) for name, d in diffs.items()), (piece, diffs)
    wm = WorldModel.from_checkpoint(run / "world_model.safetensors")
    run_onnx = sessions(result)
    arrays = dataset.load_arrays()
    # FSQ's rounding on every real frame of the dataset: the same token ids as torch, not one flipped
    ids = run_onnx["encode"].run(["tokens"], {"frames": arrays.frames})[0]
    np.testing.assert_array_equal(ids, wm.tokens(arrays.frames).numpy())
    # An open-loop rollout of 3 steps from 5 held-out windows, the kv cache fed back as the dreamer does
    held_out = json.loads((run / "split.json").read_text())["held_out"]
    episodes, starts = spread_windows(arrays, held_out, 1, 3, 1, per_episode=1)
    w = gather(arrays, episodes[:5], starts[:5], 1, 3, 1)
    expected_frames, expected_done = rollout(wm, w.context, w.context_actions, w.actions)
    context_ids = run_onnx["encode"].run(["tokens"], {"frames": w.context[:, 0]})[0][:, None]
    kv, valid, _ = run_onnx["context"].run(None, {"tokens": context_ids, "actions": w.context_actions})
    for h in range(3):
        kv, valid, tokens, done = run_onnx["step"].run(None, {"kv": kv, "valid": valid, "action": w.actions[:, h]})
        frames = run_onnx["decode"].run(["frames"], {"tokens": tokens})[0]
        assert np.abs(frames.astype(int) - expected_frames[:, h]).max() <= 1, h
        np.testing.assert_allclose(done, expected_done[:, h], atol=1e-5)
    assert expected_frames.std() > 0 and not np.array_equal(expected_frames[:, 0], expected_frames[:, 2])


def test_the_effnet_features_give_the_rewards_distance(trained):
    dataset, _, result = trained
    frames = dataset.load_arrays().frames
    a, b = frames[:8], frames[8:16]
    features = sessions(result)["effnet"]
    onnx_a, onnx_b = ([torch.from_numpy(f) for f in features.run(None, {"frames": x})] for x in (a, b))
    expected = EffNetDistance(resolution=32)(a, b)
    found = normalized_feature_distance(onnx_a, onnx_b) / (4 * len(onnx_a))
    assert expected.min() > 0
    np.testing.assert_allclose(found.numpy(), expected.numpy(), atol=1e-6)


def test_each_file_carries_what_a_deployment_must_agree_on(trained):
    _, run, result = trained
    checkpoint = run / "world_model.safetensors"
    for piece, path in result.files.items():
        model = onnx.load(str(path))
        props = {p.key: p.value for p in model.metadata_props}
        assert props["format"] == "roboscape_r_ros.world_model.onnx/1" and props["piece"] == piece
        assert (props["image_size"], props["action_dim"], props["context_frames"]) == ("32", "2", "1")
        assert props["source_sha256"] == sha256(checkpoint) and props["source"] == "world_model.safetensors"
        assert json.loads(props["parity_max_abs_diff"]).keys() == result.max_abs_diff[piece].keys()
        batch_dims = [[d.dim_param for d in i.type.tensor_type.shape.dim] for i in model.graph.input]
        assert all("batch" in dims for dims in batch_dims), (piece, batch_dims)  # the dynamic batch axis
    props = {p.key: p.value for p in onnx.load(str(result.files["encode"])).metadata_props}
    assert "x / 127.5 - 1" in props["preprocessing"] and "frames: uint8 [batch, 32, 32, 3]" in props["inputs"]
    props = {p.key: p.value for p in onnx.load(str(result.files["effnet"])).metadata_props}
    assert (props["perceptual_backend"], props["resolution"]) == ("effnet", "32") and len(props["weights_sha256"]) == 64


def test_a_longer_context_exports_with_a_dynamic_frame_axis_from_random_frames(tmp_path):
    cfg = load_config(
        WorldModelConfig, "world_model", "tiny", ["image_size=32", "action_dim=4", "token_hold_threshold=3"]
    )
    torch.manual_seed(0)
    WorldModel(cfg).save(tmp_path / "wm.safetensors")  # no split.json: parity on seeded random frames
    result = export_world_model(tmp_path / "wm.safetensors", tmp_path / "onnx", perceptual_resolution=None)
    assert "seeded random" in result.parity_inputs and "effnet" not in result.files
    context = onnx.load(str(result.files["context"]))
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in context.graph.input}
    assert dims == {"tokens": ["batch", "frames", 16], "actions": ["batch", "steps", 4]}


def test_an_export_that_does_not_match_torch_is_refused_and_writes_nothing(trained, tmp_path):
    _, run, _ = trained
    with pytest.raises(ExportError, match="differ: kv by"):
        export_world_model(run, tmp_path / "strict", tolerance=1e-30, perceptual_resolution=None)
    assert not (tmp_path / "strict").exists()
    sampled = WorldModel.from_checkpoint(run / "world_model.safetensors")
    sampled.cfg.dynamics.temperature = 1.0
    sampled.save(tmp_path / "sampled.safetensors")
    with pytest.raises(ExportError, match="only greedy decoding"):
        export_world_model(tmp_path / "sampled.safetensors", tmp_path / "sampled", perceptual_resolution=None)
    assert_one_line_error(cli("export", f"world_model={tmp_path / 'missing'}"), "no world-model checkpoint")
    assert_one_line_error(cli("export", f"world_model={run}", f"policy={run}"), "one of them")


def test_the_export_command_writes_a_folder_and_reports_each_piece(trained, tmp_path):
    dataset, run, _ = trained
    before = sorted(Path(run).parent.rglob("*"))
    relative = os.path.relpath(run, tmp_path)  # relative paths, as a user types them
    done = cli("export", f"world_model={relative}", "output=cli", "perceptual=false", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(Path(run).parent.rglob("*")) == before
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == [
        f"{p}.onnx" for p in ("context", "decode", "encode", "step")
    ]
    assert (
        "step.onnx" in done.stdout
        and "tokens 0" in done.stdout
        and str(EpisodeDataset.open(dataset.root).root) in done.stdout
    )
