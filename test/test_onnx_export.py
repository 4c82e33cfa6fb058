"""`roboscape-r export` and the ONNX Runtime path of the inference interface (runtime/inference/runners.py):
the exported policy acts as the torch one does, carries its metadata, and bad files or mismatched
runtimes fail with one line."""

import json
import shutil

import numpy as np
import onnx
import pytest
import torch

from helpers.cli_runner import assert_one_line_error, cli
from roboscape_r_ros.contract.action_spec import metaworld_action_spec
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.export.graph import ExportError, sha256
from roboscape_r_ros.export.policy import export_policy
from roboscape_r_ros.rl.policy import ImagePolicy, PolicyCheckpointError, PolicyConfig, PolicyMismatchError
from roboscape_r_ros.runtime.inference.policies import BackendError, BackendOptions, PolicyInput, make_backend
from roboscape_r_ros.runtime.inference.runners import onnx_providers, open_policy_runner

TINY = dict(image_size=16, action_dim=4, chunk=2, channels=[8, 8], hidden=16)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    policy = ImagePolicy(PolicyConfig(**TINY))
    with torch.no_grad():
        policy.actor_mean.weight.normal_(0.0, 0.5)  # a mean far enough from 0 to tell actions apart
    checkpoint = policy.save(folder / "policy.safetensors")
    return checkpoint, export_policy(checkpoint, folder / "policy.onnx")


def frames(batch: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (batch, 16, 16, 3), dtype=np.uint8)


def test_the_onnx_policy_gives_torchs_actions_at_any_batch(exported):
    checkpoint, result = exported
    torch_runner, onnx_runner = open_policy_runner(checkpoint), open_policy_runner(result.path)
    assert (torch_runner.runtime, onnx_runner.runtime) == ("torch", "onnx")
    assert onnx_runner.providers == ["CPUExecutionProvider"]  # what the session runs, not what was asked
    for batch in (1, 3, 16):
        image, goal = frames(batch, seed=10 + batch), frames(batch, seed=20 + batch)
        expected = torch_runner.mean(image, goal)
        assert expected.shape == (batch, 2, 4) and np.abs(expected).max() > 0.1
        np.testing.assert_allclose(onnx_runner.mean(image, goal), expected, atol=1e-5)
    assert result.max_abs_diff <= 1e-4


def test_the_file_carries_what_a_deployment_must_agree_on(exported):
    checkpoint, result = exported
    props = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert props["format"] == "roboscape_r_ros.policy.onnx/1"
    assert json.loads(props["config"])["chunk"] == 2 and json.loads(props["config"])["image_size"] == 16
    assert props["source_sha256"] == sha256(checkpoint) and props["source"] == "policy.safetensors"
    assert "uint8 [B,16,16,3] RGB" in props["inputs"] and "[B,2,4]" in props["output"]
    graph_inputs = {i.name: i.type.tensor_type for i in onnx.load(str(result.path)).graph.input}
    assert graph_inputs["image"].shape.dim[0].dim_param == "batch"  # the dynamic batch axis


def test_the_learned_backend_runs_the_onnx_file_and_refuses_sampling_from_it(exported):
    checkpoint, result = exported
    spec = metaworld_action_spec()
    image, goal = frames(1, seed=5)[0], frames(1, seed=6)[0]
    actions = {}
    for path in (checkpoint, result.path):
        backend = make_backend("learned", BackendOptions(spec, checkpoint=str(path)))
        actions[path.suffix] = [backend.act(PolicyInput(image=image, goal=goal)) for _ in range(2)]  # one chunk
    np.testing.assert_allclose(actions[".onnx"], actions[".safetensors"], atol=1e-5)
    with pytest.raises(BackendError, match="needs the .safetensors checkpoint"):
        make_backend("learned", BackendOptions(spec, checkpoint=str(result.path), sample=True))
    with pytest.raises(BackendError, match="export this checkpoint first"):
        make_backend("learned", BackendOptions(spec, checkpoint=str(checkpoint), runtime="onnx"))


def test_bad_files_and_mismatches_fail_with_one_clear_error(exported, tmp_path):
    checkpoint, result = exported
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(result.path.read_bytes()[:200])
    with pytest.raises(PolicyCheckpointError, match="not a readable ONNX model"):
        open_policy_runner(truncated)
    foreign = tmp_path / "foreign.onnx"
    model = onnx.load(str(result.path))
    onnx.helper.set_model_props(model, {"format": "someone.else/1"})
    onnx.save(model, str(foreign))
    with pytest.raises(PolicyCheckpointError, match="not a policy exported by roboscape-r export"):
        open_policy_runner(foreign)
    with pytest.raises(PolicyMismatchError, match="emits 4-D actions, expected 7-D"):
        open_policy_runner(result.path, action_dim=7)
    with pytest.raises(RoboscapeError, match="runs under runtime onnx"):
        open_policy_runner(result.path, runtime="torch")
    with pytest.raises(PolicyCheckpointError, match="no such ONNX policy file"):
        open_policy_runner(tmp_path / "missing.onnx")


def test_an_export_that_does_not_match_torch_is_refused_and_writes_nothing(exported, tmp_path):
    checkpoint, _ = exported
    with pytest.raises(ExportError, match="differ: action by"):
        export_policy(checkpoint, tmp_path / "strict.onnx", tolerance=1e-30)
    assert not list(tmp_path.iterdir())


def test_accelerator_providers_are_asked_for_only_on_a_cuda_device_and_only_where_built():
    available = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers("cuda", available) == available
    assert onnx_providers("cuda:0", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert onnx_providers("cpu", available) == ["CPUExecutionProvider"]


@pytest.mark.slow
def test_the_export_command(exported, tmp_path):
    checkpoint, _ = exported
    done = cli("export", f"policy={checkpoint}", f"output={tmp_path / 'cli.onnx'}")
    assert done.returncode == 0, done.stderr
    assert "max |onnxruntime - torch|" in done.stdout and (tmp_path / "cli.onnx").is_file()
    assert_one_line_error(cli("export", f"policy={tmp_path / 'cli.onnx'}"), "not a readable safetensors file")
    assert_one_line_error(cli("export"), "export needs policy=")


@pytest.mark.slow
def test_the_export_command_writes_the_output_file_and_nothing_else(exported, tmp_path):
    """A relative checkpoint path crashed (the temporary graph file was named after it); an absolute one left
    <checkpoint>.onnx beside the checkpoint."""
    checkpoint, _ = exported
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    target.mkdir()
    shutil.copy(checkpoint, source / checkpoint.name)
    relative = cli("export", f"policy=../source/{checkpoint.name}", "output=relative.onnx", cwd=target)
    assert relative.returncode == 0, relative.stderr
    absolute = cli("export", f"policy={source / checkpoint.name}", f"output={target / 'absolute.onnx'}")
    assert absolute.returncode == 0, absolute.stderr
    assert sorted(p.name for p in source.iterdir()) == [checkpoint.name]
    assert sorted(p.name for p in target.iterdir()) == ["absolute.onnx", "relative.onnx"]
    assert onnx.load(str(target / "relative.onnx")).graph.input[0].name == "image"


def test_a_reload_swaps_a_fitting_policy_and_refuses_the_rest_keeping_the_old(exported, tmp_path):
    checkpoint, result = exported
    spec = metaworld_action_spec()
    backend = make_backend("learned", BackendOptions(spec, checkpoint=str(result.path)))
    image, goal = frames(1, seed=7)[0], frames(1, seed=8)[0]
    before = backend.runner.mean(image[None], goal[None])
    other = ImagePolicy(PolicyConfig(**TINY))  # fresh weights: other actions
    refused = {
        "truncated": (tmp_path / "truncated.onnx", result.path.read_bytes()[:300], "not a readable ONNX model"),
        "action spec": (
            ImagePolicy(PolicyConfig(**{**TINY, "action_dim": 3})).save(tmp_path / "a3.safetensors"),
            None,
            "emits 3-D actions, expected 4-D",
        ),
        "image size": (
            ImagePolicy(PolicyConfig(**{**TINY, "image_size": 32})).save(tmp_path / "s32.safetensors"),
            None,
            "reads 32px frames in chunks of 2, the running one 16px",
        ),
    }
    for path, data, why in refused.values():
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(BackendError, match=f"reload refused, the old policy keeps running: .*{why}"):
            backend.reload(str(path))
        np.testing.assert_array_equal(backend.runner.mean(image[None], goal[None]), before)
    described = backend.reload(str(other.save(tmp_path / "other.safetensors")))
    assert "other.safetensors (torch on torch:cpu)" in described
    assert not np.allclose(backend.runner.mean(image[None], goal[None]), before)
    sampler = make_backend("learned", BackendOptions(spec, checkpoint=str(checkpoint), sample=True))
    with pytest.raises(BackendError, match="no reload"):
        sampler.reload(str(checkpoint))


def test_the_file_watch_fires_once_per_new_file(tmp_path):
    from roboscape_r_ros.runtime.inference.reload import FileWatch

    path = tmp_path / "policy.onnx"
    watch = FileWatch(path)
    assert not watch.changed()  # no file yet
    path.write_bytes(b"one")
    assert watch.changed() and not watch.changed()
    path.write_bytes(b"two!")
    assert watch.changed() and not watch.changed()
