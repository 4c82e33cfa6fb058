"""World model end to end on a tiny synthetic world where motion depends on the action.

A red square moves by 4 px per unit of action (dx, dy); an episode succeeds when it reaches a blue
goal marker (lengths vary with the start distance), with the paper's done labels
exp(4 (k/(N-1) - 1)); failed episodes (time-out) are labelled 0. Actions are the direction to the
goal plus strong noise, so the next frame is unpredictable without the action.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from roboscape_r_ros.config import ConfigError, from_dict, load_config
from roboscape_r_ros.perception.metrics import psnr
from roboscape_r_ros.world_model import (
    CheckpointError,
    WorldModel,
    WorldModelConfig,
    train_action_model,
    train_goal_model,
    train_tokenizer,
)
from roboscape_r_ros.world_model.checkpoint import save_tensors
from roboscape_r_ros.world_model.config import InferenceConfig
from roboscape_r_ros.world_model.dynamics import attend, two_stream_mask
from roboscape_r_ros.world_model.tokenizer import hold_static_tokens

SIZE, SQUARE, GRID, MAX_LEN = 32, 8, 4, 16
GOAL = np.array([12, 12])  # the blue marker surrounds this cell
INSTRUCTIONS = ["move the red square onto the blue marker"]


def render(pos: np.ndarray) -> np.ndarray:
    frame = np.full((SIZE, SIZE, 3), 40, np.uint8)
    frame[GOAL[1] - 2 : GOAL[1] + SQUARE + 2, GOAL[0] - 2 : GOAL[0] + SQUARE + 2] = (40, 90, 230)
    frame[pos[1] : pos[1] + SQUARE, pos[0] : pos[0] + SQUARE] = (230, 50, 40)
    return frame


def move(pos: np.ndarray, action: np.ndarray) -> np.ndarray:
    """Each action component beyond +-1/3 moves the square one grid cell (4 px) that way."""
    return np.clip(pos + GRID * np.sign(action) * (np.abs(action) > 1 / 3), 0, SIZE - SQUARE).astype(int)


def episode(rng: np.random.Generator, noise: float) -> dict[str, np.ndarray]:
    """An expert (x first, then y) with action noise; success when the square covers the marker."""
    cells = np.arange(0, SIZE - SQUARE + 1, GRID)
    pos = rng.choice(cells, 2)
    while (pos == GOAL).all():
        pos = rng.choice(cells, 2)
    frames, actions = [render(pos)], []
    while len(frames) < MAX_LEN and not (pos == GOAL).all():
        axis = 0 if pos[0] != GOAL[0] else 1
        action = np.clip(0.8 * np.sign(GOAL - pos) * (np.arange(2) == axis) + rng.normal(0, noise, 2), -1, 1)
        pos = move(pos, action)
        frames.append(render(pos))
        actions.append(action)
    actions.append(np.zeros(2))  # no action after the last frame
    n = len(frames)
    success = (pos == GOAL).all()
    done = np.exp(4 * (np.arange(n) / (n - 1) - 1)) if success else np.zeros(n)
    return {
        "frames": np.stack(frames),
        "actions": np.stack(actions).astype(np.float32),
        "done": done.astype(np.float32),
    }


def make_episodes(n: int, seed: int, noise: float = 0.6) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [episode(rng, noise) for _ in range(n)]


def windows(episodes, T: int, batch: int, seed: int):
    """Endless loader batches of T-frame windows inside episodes of at least T frames."""
    rng = np.random.default_rng(seed)
    usable = [ep for ep in episodes if len(ep["frames"]) >= T]
    while True:
        picks = [usable[i] for i in rng.integers(len(usable), size=batch)]
        starts = [rng.integers(len(ep["frames"]) - T + 1) for ep in picks]
        yield {
            **{k: np.stack([ep[k][s : s + T] for ep, s in zip(picks, starts)]) for k in ("frames", "actions", "done")},
            "task_index": np.zeros(batch, np.int64),
        }


def tiny_config(*overrides: str) -> WorldModelConfig:
    sizes = ["image_size=32", "action_dim=2", "context_length=3"]
    return load_config(WorldModelConfig, "world_model", "tiny", [*sizes, *overrides])


def mean(history: list[dict[str, float]], key: str, part: slice) -> float:
    return float(np.nanmean([m[key] for m in history[part]]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Tokenizer, action model and goal model trained briefly (~30 s on 2 CPU cores)."""
    torch.manual_seed(0)
    cfg = tiny_config()
    run = tmp_path_factory.mktemp("run")
    wm = WorldModel(cfg)
    T, B = cfg.context_length, cfg.train.batch_size
    noisy, experts = make_episodes(400, 0), make_episodes(200, 1, noise=0.1)
    t0 = time.perf_counter()
    histories = {
        "tokenizer": train_tokenizer(wm, windows(noisy, T, B, 0), steps=200, run_dir=run),
        "action": train_action_model(wm, windows(noisy, T, B, 1), steps=200, run_dir=run),
        "goal": train_goal_model(wm, windows(experts, T, B, 2), INSTRUCTIONS, steps=120, run_dir=run),
    }
    print(f"trained tiny world model in {time.perf_counter() - t0:.1f} s")
    return wm, histories, run


@pytest.mark.slow
def test_losses_fall(trained):
    _, h, _ = trained
    assert mean(h["tokenizer"], "psnr", slice(-20, None)) > 26  # dB; the background alone gives ~18
    for stage in ("action", "goal"):
        assert mean(h[stage], "loss", slice(-20, None)) < 0.3 * mean(h[stage], "loss", slice(0, 20))
        assert mean(h[stage], "changed_acc", slice(-20, None)) > 0.5  # learns motion, not just copying


def test_prediction_uses_the_action(trained):
    wm, _, _ = trained
    batch = next(windows(make_episodes(100, 5), wm.cfg.context_length, 256, 5))
    frames, actions = torch.as_tensor(batch["frames"]), torch.as_tensor(batch["actions"])
    moved = (frames[:, -1] != frames[:, -2]).flatten(1).any(1)
    context, target = frames[moved, :-1], frames[moved, -1]
    state = wm.encode_context(context, actions[moved, :-2])
    _, predicted, _ = wm.step(state, actions[moved, -2])
    _, wrong, _ = wm.step(state, -actions[moved, -2])
    copy_db, pred_db, wrong_db = (psnr(x, target).mean().item() for x in (context[:, -1], predicted, wrong))
    print(f"next-frame PSNR: predicted {pred_db:.1f} dB, copy-last {copy_db:.1f} dB, negated action {wrong_db:.1f} dB")
    assert pred_db > copy_db + 4
    assert pred_db > wrong_db + 3


def test_faster_inference_settings_keep_the_prediction(trained):
    """One MaskGIT iteration in bf16 (InferenceConfig) still predicts the moved frame from the action; the state
    stays float32 and the done probability a float32 in [0, 1]."""
    wm, _, _ = trained
    batch = next(windows(make_episodes(100, 5), wm.cfg.context_length, 256, 5))
    frames, actions = torch.as_tensor(batch["frames"]), torch.as_tensor(batch["actions"])
    moved = (frames[:, -1] != frames[:, -2]).flatten(1).any(1)
    context, target = frames[moved, :-1], frames[moved, -1]
    as_trained = wm.cfg.dynamics.decode_steps
    db = {}
    try:
        for name, setting in {
            "as trained": InferenceConfig(),
            "fast": InferenceConfig(decode_steps=1, precision="bfloat16"),
        }.items():
            wm.configure(setting)
            state, predicted, done = wm.step(wm.encode_context(context, actions[moved, :-2]), actions[moved, -2])
            db[name] = psnr(predicted, target).mean().item()
            assert (
                state.kv.dtype == torch.float32 and done.dtype == torch.float32 and 0 <= done.min() <= done.max() <= 1
            )
    finally:
        wm.configure(InferenceConfig(decode_steps=as_trained, precision="float32"))
    copy_db = psnr(context[:, -1], target).mean().item()
    print(f"next-frame PSNR: as trained {db['as trained']:.1f} dB, fast {db['fast']:.1f} dB, copy-last {copy_db:.1f}")
    assert db["fast"] > copy_db + 4 and db["fast"] > db["as trained"] - 1.0
    with pytest.raises(ConfigError, match="decode_steps must be >= 0, got -1"):
        from_dict(InferenceConfig, {"decode_steps": -1})


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_paths_match_fused_attention(dtype):
    """attend's own paths (one frame over a cache; bf16 on a CPU) compute what SDPA computes, masks included."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(6, 2, 3, 8, dtype=dtype) for _ in range(3))
    mask = torch.rand(6, 1, 3, 3) > 0.3
    mask |= torch.eye(3, dtype=torch.bool)  # every query sees at least itself
    expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
    tolerance = 1e-5 if dtype == torch.float32 else 3e-2
    assert torch.allclose(attend(q, k, v, mask).float(), expected, atol=tolerance)
    past = torch.randn(6, 2, 4, 8), torch.randn(6, 2, 4, 8)  # a cache of 4 frames, float32 as State holds it
    q1, k1, v1 = (x[:, :, :1].float() for x in (q, k, v))
    cache_mask = torch.rand(6, 1, 1, 5) > 0.3
    cache_mask[..., -1] = True
    expected = F.scaled_dot_product_attention(
        q1, torch.cat([past[0], k1], 2), torch.cat([past[1], v1], 2), attn_mask=cache_mask
    )
    assert torch.allclose(attend(q1, k1, v1, cache_mask, past), expected, atol=1e-5)


def test_done_head_separates_end_frames_from_early_frames(trained):
    wm, _, _ = trained
    episodes = [ep for ep in make_episodes(80, 6) if ep["done"][-1] == 1.0 and len(ep["frames"]) >= 4]
    assert len({len(ep["frames"]) for ep in episodes}) >= 5  # varied lengths: no timing shortcut
    T = wm.cfg.context_length
    end = torch.stack(
        [wm.done_probability(ep["frames"][None, -T:], ep["actions"][None, -T:-1])[0, -1] for ep in episodes]
    )
    early = torch.stack(
        [wm.done_probability(ep["frames"][None, :2], ep["actions"][None, :1])[0] for ep in episodes]
    ).flatten()
    print(f"done probability: end frames min {end.min():.2f}, early frames max {early.max():.2f}")
    assert end.min() > early.max()
    assert end.mean() > 0.8 and early.mean() < 0.2


def test_goal_model_imagines_the_goal_frame(trained):
    wm, _, _ = trained
    episodes = [ep for ep in make_episodes(60, 7, noise=0.1) if len(ep["frames"]) >= 4]
    first = np.stack([ep["frames"][0] for ep in episodes])
    final = torch.as_tensor(np.stack([ep["frames"][-1] for ep in episodes]))
    goals = wm.imagine_goal(first, INSTRUCTIONS * len(episodes), max_steps=MAX_LEN)
    assert goals.frames.shape == (len(episodes), goals.done.shape[1], SIZE, SIZE, 3)
    assert (goals.frames[:, 0] == torch.as_tensor(first)).all()
    fired = goals.fired.float().mean().item()
    goal_db, first_db = psnr(goals.goal, final).mean().item(), psnr(first, final).mean().item()
    print(
        f"goal model: done fired in {fired:.0%} of episodes; "
        f"goal-vs-true-final PSNR {goal_db:.1f} dB (first frame {first_db:.1f} dB)"
    )
    assert fired > 0.6
    assert goal_db > first_db + 5


def test_checkpoint_round_trip_and_resume(trained, tmp_path):
    wm, _, run = trained
    path = tmp_path / "wm.safetensors"
    wm.save(path)
    loaded = WorldModel.from_checkpoint(path)
    assert loaded.cfg == wm.cfg
    assert all(torch.equal(a, b) for a, b in zip(wm.state_dict().values(), loaded.state_dict().values()))
    frames = torch.as_tensor(make_episodes(4, 8)[0]["frames"][None, :2])
    actions = torch.zeros(1, 1, 2)
    outputs = [m.step(m.encode_context(frames, actions), torch.ones(1, 2))[1:] for m in (wm, loaded)]
    assert all(torch.equal(a, b) for a, b in zip(*outputs))
    # a finished stage resumes to nothing; a longer one continues from the saved optimizer step
    batches = windows(make_episodes(20, 9), wm.cfg.context_length, 4, 9)
    assert train_action_model(wm, batches, steps=200, run_dir=run) == []
    assert len(train_action_model(wm, batches, steps=203, run_dir=run)) == 3


def test_static_patches_keep_their_token_and_moving_ones_take_the_new_one():
    rng = np.random.default_rng(0)
    frames = torch.as_tensor(np.repeat(rng.integers(0, 250, (1, 1, 16, 16, 3), dtype=np.uint8), 4, 1))  # [1,4,16,16,3]
    frames[0, 1:, 0:8, 0:8] += 5  # patch (0,0) moves at t=1 and stays
    frames[0, 2:, 8:16, 8:16] += 5  # patch (1,1) moves at t=2 and stays
    frames[0, 1:, 0:8, 8:16] ^= 1  # patch (0,1) flickers by 1 level from t=1 on ...
    frames[0, 2, 0:8, 8:16] ^= 2  # ... by up to 3 at t=2: within a threshold of 3 of its t=0 pixels
    ids = torch.arange(4 * 4).reshape(1, 4, 2, 2)  # every frame's ids differ from every other's
    held = hold_static_tokens(ids, frames, threshold=3)[0]  # [4,2,2]
    assert held[:, 1, 0].tolist() == [2, 2, 2, 2]  # never moves: its first id throughout
    assert held[:, 0, 0].tolist() == [0, 4, 4, 4]  # the t=1 id, kept while later frames equal frame 1
    assert held[:, 1, 1].tolist() == [3, 3, 11, 11]
    assert held[:, 0, 1].tolist() == [1, 1, 1, 1]
    assert torch.equal(hold_static_tokens(ids, frames, threshold=-1), ids)


def test_windows_without_history_see_only_the_frame_before():
    T = 4  # clean frames 0..3 at rows 0..3, masked copies of frames 1..3 at rows 4..6
    causal, alone = two_stream_mask(T, torch.tensor([False, True]))
    seen = lambda mask, row: torch.nonzero(mask[row])[:, 0].tolist()  # noqa: E731
    assert seen(causal, 6) == [0, 1, 2, 6] and seen(causal, 4) == [0, 4]  # masked frame 3, masked frame 1
    assert seen(causal, 2) == [0, 1, 2]  # clean frame 2
    assert seen(alone, 6) == [2, 6] and seen(alone, 4) == [0, 4]
    assert all(seen(alone, row) == [row] for row in range(T))


def test_kv_cache_step_matches_a_full_pass():
    """A cached step (context right-aligned in the cache, RoPE by slot) equals recomputing all frames."""
    torch.manual_seed(0)
    wm = WorldModel(tiny_config("context_length=4")).eval()
    tokens = wm.tokens(make_episodes(1, 10, noise=0.0)[0]["frames"][None, :2])  # [1,2,N]
    actions = torch.randn(1, 2, 2)
    with torch.no_grad():
        state, _ = wm.dynamics.prefill(tokens, wm.actions.context(actions[:, :1]))
        state, new, done_logit, _ = wm.dynamics.predict_next(state, wm.actions.next(actions[:, 1]))
        _, full = wm.dynamics.encode(torch.cat([tokens, new[:, None]], 1), wm.actions.context(actions))
    assert torch.allclose(full[:, -1], done_logit, atol=1e-5)
    for _ in range(3):  # the window rolls: its C=3 slots stay full
        state, predicted, done = wm.step(state, actions[:, 1])
    assert state.valid.all() and predicted.shape == (1, SIZE, SIZE, 3) and 0 <= done.item() <= 1
    # resetting one environment of a batch replaces its row only
    frames = torch.as_tensor(make_episodes(1, 11)[0]["frames"][None, :1])
    pair = wm.encode_context(torch.cat([frames, frames]), torch.zeros(2, 0, 2))
    fresh = wm.encode_context(frames, torch.zeros(1, 0, 2))
    reset = state.replace(torch.tensor([0]), fresh)
    assert torch.equal(reset.kv, fresh.kv) and torch.equal(reset.valid, fresh.valid)
    mixed = pair.replace(torch.tensor([1]), state)
    assert torch.equal(mixed.kv[:, :, 0], pair.kv[:, :, 0]) and torch.equal(mixed.kv[:, :, 1], state.kv[:, :, 0])


def test_done_head_learns_only_from_labelled_episodes():
    wm = WorldModel(tiny_config())
    batch = next(windows(make_episodes(8, 12), wm.cfg.context_length, 4, 12))
    frames, actions = torch.as_tensor(batch["frames"]), torch.as_tensor(batch["actions"])

    def done_mse(done: np.ndarray, labelled: list[bool] | None) -> float:
        mask = None if labelled is None else torch.tensor(labelled)
        torch.manual_seed(0)  # the same token masking in every call
        return wm.action_loss(frames, actions, torch.as_tensor(done), labelled=mask)[1]["done_mse"]

    done = batch["done"].copy()
    everything = done_mse(done, None)
    assert done_mse(done, [True] * 4) == pytest.approx(everything)
    done[2:] = 1 - done[2:]  # labels of windows 2 and 3 changed: they count only where labelled
    assert done_mse(done, [True, True, False, False]) == pytest.approx(
        done_mse(batch["done"], [True, True, False, False])
    )
    assert done_mse(done, [False] * 4) == 0.0


@pytest.mark.parametrize("damage", ["missing", "random", "truncated", "foreign", "shapes"])
def test_bad_checkpoint_raises_checkpoint_error_naming_the_file(tmp_path, damage):
    wm = WorldModel(tiny_config())
    path = tmp_path / f"{damage}.safetensors"
    if damage == "random":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    elif damage == "truncated":
        wm.save(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "foreign":
        save_tensors(path, {"weight": torch.zeros(3)}, {"note": "someone else's"})
    elif damage == "shapes":
        other = WorldModel(tiny_config("dynamics.dim=32"))
        meta = {"format": "roboscape_r_ros.world_model/1", "config": dataclasses.asdict(other.cfg)}
        save_tensors(path, wm.state_dict(), meta)  # weights of one config, metadata of another
    with pytest.raises(CheckpointError, match=str(path)):
        WorldModel.from_checkpoint(path)


@pytest.mark.parametrize("preset", ["tiny", "small", "base", "paper"])
def test_presets_build(preset):
    cfg = load_config(WorldModelConfig, "world_model", preset, [])
    with torch.device("meta"):
        wm = WorldModel(cfg)
    assert sum(p.numel() for p in wm.parameters()) > 0


@pytest.mark.slow
def test_training_under_cpu_bf16_autocast_learns_and_keeps_float32_weights():
    """model.train.cpu_amp: the loops run under bf16 autocast on a CPU; weights and optimizer stay float32."""
    torch.manual_seed(0)
    wm = WorldModel(tiny_config("train.cpu_amp=true"))
    T, B = wm.cfg.context_length, wm.cfg.train.batch_size
    episodes = make_episodes(100, 3)
    train_tokenizer(wm, windows(episodes, T, B, 0), steps=60, progress=False)
    history = train_action_model(wm, windows(episodes, T, B, 1), steps=60, progress=False)
    assert mean(history, "loss", slice(-10, None)) < 0.6 * mean(history, "loss", slice(0, 10))
    assert all(p.dtype == torch.float32 for p in wm.parameters())
