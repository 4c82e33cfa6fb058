"""PPO for the goal-conditioned image policy against any batched env of the contract in vec.py.

One algorithm, readable top to bottom (after CleanRL's ppo_continuous_action.py):
  rollout   N envs x T decisions with the current policy; actions are clipped to [-1, 1] when executed
  rewards   optionally divided by the running std of the discounted return (running reward
            normalisation); a truncated episode gets gamma * V(final obs) added to its last reward
            (it did not end, it was cut), a terminated one gets nothing
  GAE       lambda-returns over the rollout (gamma, lambda)
  update    clipped surrogate (clip 0.2), value loss (optionally clipped), entropy bonus, several epochs
            of shuffled minibatches; separate learning rates for actor and critic; optional
            value-only warm-up iterations so a fresh critic does not wreck a BC-initialised actor

The update is one function, ``ppo_update`` (GAE, then the clipped-surrogate epochs) on a ``RolloutBuffer``:
``train_ppo`` fills the buffer from a batched env, ``runtime.learner`` fills it from the ROS topic loop
(policy_controller's learning mode), so offline and online training share every line of the update.

With a chunked policy (K actions per decision) one transition is one decision: the env runs the K
actions and returns their summed reward, and gamma applies per decision. Env outputs may be numpy or
torch (any device); rollout storage lives on the policy's device.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from roboscape_r_ros.config import option, to_dict
from roboscape_r_ros.distributed import data_parallel, mean_metrics, ranks, sum_metrics
from roboscape_r_ros.rl.policy import ImagePolicy
from roboscape_r_ros.rl.resume import load_resume, save_resume
from roboscape_r_ros.rl.vec import BatchedEnv, as_tensor, check_env, final_obs, obs_to_tensors

Log = Callable[[int, dict[str, float]], None]


@dataclass
class PPOConfig:
    total_steps: int = option(100_000, help="transitions (policy decisions summed over all envs) to train for", low=1)
    num_steps: int = option(128, help="decisions per env per rollout (rollout length T)", low=1)
    update_epochs: int = option(4, help="passes over each rollout", low=1)
    num_minibatches: int = option(4, help="minibatches per pass (each N*T/num_minibatches transitions)", low=1)
    lr: float = option(3e-4, help="actor Adam learning rate")
    critic_lr: float = option(1e-3, help="critic Adam learning rate")
    anneal_lr: bool = option(True, help="decay both learning rates linearly to 0 over training")
    gamma: float = option(0.99, help="discount per decision", low=0.0, high=1.0)
    gae_lambda: float = option(0.95, help="GAE lambda", low=0.0, high=1.0)
    clip_coef: float = option(0.2, help="PPO ratio clip", above=0.0)
    clip_value: bool = option(False, help="clip the value update to +-clip_coef around the rollout's values")
    ent_coef: float = option(0.0, help="entropy bonus coefficient")
    vf_coef: float = option(0.5, help="value loss coefficient")
    max_grad_norm: float = option(0.5, help="global gradient norm clip")
    target_kl: float | None = option(None, help="stop an update's epochs early past this approximate KL")
    normalize_reward: bool = option(True, help="divide rewards by the running std of the discounted return")
    normalize_advantages: bool = option(True, help="standardise advantages per minibatch")
    value_warmup_iterations: int = option(0, help="first iterations train only the critic (after BC)")
    seed: int = option(0, help="seed of the env reset and the action sampling")
    checkpoint_every: int = option(10, help="iterations between resume points in the run folder (0: none)", low=0)


class RewardScaler:
    """Divides rewards by the running std of each env's discounted return (gymnasium's NormalizeReward)."""

    def __init__(self, num_envs: int, gamma: float, device: torch.device, epsilon: float = 1e-8):
        self.gamma, self.epsilon = gamma, epsilon
        self.returns = torch.zeros(num_envs, dtype=torch.float64, device=device)
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def __call__(self, reward: torch.Tensor, ended: torch.Tensor) -> torch.Tensor:
        self.returns = self.returns * self.gamma + reward.double()
        self._update(self.returns)
        self.returns[ended] = 0.0
        return reward / math.sqrt(self.var + self.epsilon)

    def _update(self, x: torch.Tensor) -> None:  # parallel mean/variance merge (Chan et al.)
        batch_mean, batch_var, n = x.mean().item(), x.var(unbiased=False).item(), x.numel()
        delta, total = batch_mean - self.mean, self.count + n
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.mean, self.var, self.count = self.mean + delta * n / total, m2 / total, total


class EpisodeTracker:
    """Raw (unnormalised) return, length and success of each env's running episode; finished ones listed."""

    def __init__(self, num_envs: int, device: torch.device):
        self.ret = torch.zeros(num_envs, device=device)
        self.length = torch.zeros(num_envs, dtype=torch.long, device=device)
        self.success = torch.zeros(num_envs, dtype=torch.bool, device=device)
        self.finished: list[tuple[float, int, bool]] = []

    def update(self, reward: torch.Tensor, ended: torch.Tensor, success: torch.Tensor | None) -> None:
        self.ret += reward
        self.length += 1
        if success is not None:
            self.success |= success
        for i in torch.nonzero(ended).flatten().tolist():
            self.finished.append((float(self.ret[i].item()), int(self.length[i].item()), bool(self.success[i].item())))
        self.ret[ended], self.length[ended], self.success[ended] = 0.0, 0, False

    def pop(self) -> dict[str, float]:
        """Means over the episodes finished since the last pop (under torchrun: over every rank's)."""
        returns, lengths, successes = zip(*self.finished) if self.finished else ((), (), ())
        self.finished = []
        sums = sum_metrics(
            {"return": sum(returns), "length": sum(lengths), "success": sum(successes), "count": len(returns)}
        )
        if not sums["count"]:
            return {}
        return {
            "episode/return": sums["return"] / sums["count"],
            "episode/length": sums["length"] / sums["count"],
            "episode/success": sums["success"] / sums["count"],
            "episode/count": sums["count"],
        }


class RolloutBuffer:
    """One rollout of T decisions from N envs (row t, column n), on the policy's device.

    Whoever collects fills the rows (``train_ppo`` from a batched env, ``runtime.learner`` from the ROS
    topic loop), then ``ppo_update`` computes GAE and optimises on it.
    """

    def __init__(self, T: int, N: int, image_shape: tuple[int, ...], chunk: int, action_dim: int, device: torch.device):
        self.images = torch.zeros((T, N, *image_shape), dtype=torch.uint8, device=device)  # [T,N,H,W,3]
        self.goals = torch.zeros_like(self.images)  # [T,N,H,W,3]
        self.actions = torch.zeros((T, N, chunk, action_dim), device=device)  # unclipped samples [T,N,K,A]
        self.logprobs = torch.zeros((T, N), device=device)
        self.rewards = torch.zeros((T, N), device=device)  # normalised, truncation bootstrap included
        self.dones = torch.zeros((T, N), device=device)  # 1 where obs[t] is the first of a new episode
        self.values = torch.zeros((T, N), device=device)
        self.next_value = torch.zeros(N, device=device)  # V(obs after the last row)
        self.next_done = torch.zeros(N, device=device)  # 1 where the last row ended its episode

    @property
    def size(self) -> int:
        return self.rewards.numel()  # T*N

    def advantages(self, gamma: float, gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Generalised advantage estimation: advantages [T,N] and lambda-returns [T,N]."""
        T = self.rewards.shape[0]
        advantages = torch.zeros_like(self.rewards)  # [T,N]
        last_gae = torch.zeros_like(self.next_value)  # [N]
        for t in reversed(range(T)):
            next_nonterminal = 1.0 - (self.next_done if t == T - 1 else self.dones[t + 1])
            following = self.next_value if t == T - 1 else self.values[t + 1]
            delta = self.rewards[t] + gamma * following * next_nonterminal - self.values[t]
            last_gae = delta + gamma * gae_lambda * next_nonterminal * last_gae
            advantages[t] = last_gae
        return advantages, advantages + self.values


def make_optimizer(policy: ImagePolicy, cfg: PPOConfig) -> torch.optim.Adam:
    """Adam with two groups: the actor's parameters (cfg.lr) and the critic's (cfg.critic_lr)."""
    return torch.optim.Adam(
        [
            {"params": policy.actor_parameters(), "lr": cfg.lr},
            {"params": policy.critic_parameters(), "lr": cfg.critic_lr},
        ],
        eps=1e-5,
    )


def minibatch_loss(
    policy: ImagePolicy, cfg: PPOConfig, value_only: bool, mb: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's loss on one minibatch ``mb`` (image, goal, actions, logprob, advantage, return, value; [B,...])
    and its parts (detached). ``value_only``: the critic's loss alone (warm-up after BC)."""
    _, new_logprob, entropy, new_value = policy.get_action_and_value(
        {"image": mb["image"], "goal": mb["goal"]}, mb["actions"]
    )
    log_ratio = new_logprob - mb["logprob"]
    ratio = log_ratio.exp()
    advantage = mb["advantage"]
    if cfg.normalize_advantages and len(advantage) > 1:
        advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
    pg_loss = torch.max(-advantage * ratio, -advantage * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()

    if cfg.clip_value:
        clipped = mb["value"] + (new_value - mb["value"]).clamp(-cfg.clip_coef, cfg.clip_coef)
        v_loss = 0.5 * torch.max((new_value - mb["return"]) ** 2, (clipped - mb["return"]) ** 2).mean()
    else:
        v_loss = 0.5 * ((new_value - mb["return"]) ** 2).mean()
    entropy_mean = entropy.mean()

    loss = cfg.vf_coef * v_loss
    if not value_only:
        loss = loss + pg_loss - cfg.ent_coef * entropy_mean
    with torch.no_grad():
        parts = {
            "policy": pg_loss,
            "value": v_loss,
            "entropy": entropy_mean,
            "approx_kl": ((ratio - 1) - log_ratio).mean(),  # http://joschu.net/blog/kl-approx.html
            "clipfrac": ((ratio - 1.0).abs() > cfg.clip_coef).float().mean(),
        }
    return loss, parts


MinibatchLoss = Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def ppo_update(
    policy: ImagePolicy,
    optimizer: torch.optim.Optimizer,
    buffer: RolloutBuffer,
    cfg: PPOConfig,
    value_only: bool = False,
    loss_fn: MinibatchLoss | None = None,
) -> dict[str, float]:
    """GAE over ``buffer``, then the clipped-surrogate update (several epochs of shuffled minibatches).
    ``value_only`` trains the critic alone (warm-up after BC). ``loss_fn`` replaces ``minibatch_loss``
    (train_ppo passes it wrapped in DistributedDataParallel under torchrun). Returns the losses of the
    last minibatch (under torchrun averaged over the ranks)."""
    loss_fn = loss_fn or partial(minibatch_loss, policy, cfg, value_only)
    device = policy.device
    batch_size = buffer.size
    minibatch_size = max(1, batch_size // cfg.num_minibatches)
    advantages, returns = buffer.advantages(cfg.gamma, cfg.gae_lambda)  # [T,N] each

    # --- flatten the batch ------------------------------------------------------------------------
    flat = {
        "image": buffer.images.flatten(0, 1),  # [T*N,H,W,3]
        "goal": buffer.goals.flatten(0, 1),  # [T*N,H,W,3]
        "actions": buffer.actions.flatten(0, 1),  # [T*N,K,A]
        "logprob": buffer.logprobs.flatten(),  # [T*N]
        "advantage": advantages.flatten(),  # [T*N]
        "return": returns.flatten(),  # [T*N]
        "value": buffer.values.flatten(),  # [T*N]
    }

    # --- optimise policy and value ----------------------------------------------------------------
    clipfracs, approx_kl = [], 0.0
    for _ in range(cfg.update_epochs):
        order = torch.randperm(batch_size, device=device)
        for begin in range(0, batch_size, minibatch_size):
            mb = order[begin : begin + minibatch_size]
            loss, parts = loss_fn({key: value[mb] for key, value in flat.items()})
            clipfracs.append(parts["clipfrac"].item())
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            optimizer.step()
        # every rank must stop at the same epoch: the KL of the group decides
        approx_kl = mean_metrics({"kl": parts["approx_kl"].item()})["kl"]
        if cfg.target_kl is not None and approx_kl > cfg.target_kl:
            break

    b_returns, b_values = flat["return"], flat["value"]
    variance = b_returns.var().item()
    explained = float("nan") if variance == 0 else 1.0 - (b_returns - b_values).var().item() / variance
    return mean_metrics(
        {
            "loss/policy": parts["policy"].item(),
            "loss/value": parts["value"].item(),
            "loss/entropy": parts["entropy"].item(),
            "loss/approx_kl": approx_kl,
            "loss/clipfrac": float(np.mean(clipfracs)),
            "loss/explained_variance": explained,
        }
    ) | {"policy/std": policy.log_std.exp().mean().item(), "lr/actor": optimizer.param_groups[0]["lr"]}


RESUME_FILE = "ppo-resume.safetensors"
RESUME_FORMAT = "roboscape_r_ros.ppo_resume/1"


def rollout_seed(seed: int, rank: int, iteration: int) -> int:
    """Seed of the env reset and the action sampling: ``seed + rank`` for a fresh run (one process: the
    seed itself); a run resumed at ``iteration`` draws from all three, so its new episodes differ from
    the interrupted run's and a resume from the same point repeats them."""
    if iteration == 0:
        return seed + rank
    return int(np.random.SeedSequence([seed, rank, iteration]).generate_state(1)[0])


def train_ppo(
    policy: ImagePolicy,
    env: BatchedEnv,
    cfg: PPOConfig,
    log: Log | None = None,
    progress: bool = True,
    run_dir: str | Path | None = None,
) -> list[dict[str, float]]:
    """Train ``policy`` in place; returns one stats dict per iteration (also passed to ``log``).

    With ``run_dir``, save a resume point there every ``cfg.checkpoint_every`` iterations and continue
    from one: weights, Adam state, the reward statistics and the stats so far carry over; the envs
    start fresh episodes at the resume point.

    Under torchrun each rank runs its own ``env`` (its share of the global env count), seeded apart,
    and fills its own rollout; the update's minibatch loss runs through DistributedDataParallel, so
    every optimiser step applies the gradient averaged over the ranks' minibatches and the replicas
    stay equal. Advantages are normalised, and rewards scaled, per rank; logged losses and episode
    statistics are the group's. ``cfg.total_steps`` counts the decisions of all ranks.
    """
    check_env(env)
    policy.check_compatible(env.action_dim, env.image_shape, type(env).__name__)
    device, rank = policy.device, ranks()
    N, T, K = env.num_envs, cfg.num_steps, policy.cfg.chunk
    batch_size = N * T * rank.world_size  # decisions per iteration, all ranks
    iterations = max(1, cfg.total_steps // batch_size)
    optimizer = make_optimizer(policy, cfg)
    base_lrs = [cfg.lr, cfg.critic_lr]
    buffer = RolloutBuffer(T, N, env.image_shape, K, policy.cfg.action_dim, device)
    scaler = RewardScaler(N, cfg.gamma, device)
    critic = nn.ModuleList([policy.critic_encoder, policy.critic])
    loss_fns = {  # value_only -> loss; DDP averages the gradients of the parameters each one trains
        False: data_parallel(policy, partial(minibatch_loss, policy, cfg, False)),
        True: data_parallel(critic, partial(minibatch_loss, policy, cfg, True)),
    }

    history: list[dict[str, float]] = []
    first = 0
    resume = Path(run_dir) / RESUME_FILE if run_dir is not None else None
    config = {"ppo": to_dict(cfg), "policy": to_dict(policy.cfg), "rollout": {"num_envs": N * rank.world_size}}
    if resume is not None and resume.exists():
        may_change = ("total_steps", "checkpoint_every")
        first, history, state = load_resume(resume, RESUME_FORMAT, policy, optimizer, config, may_change)
        scaler.mean, scaler.var, scaler.count = state["reward_scaler"]

    seed = rollout_seed(cfg.seed, rank.rank, first)
    torch.manual_seed(seed)
    raw_obs, _ = env.reset(seed=seed)
    obs = obs_to_tensors(raw_obs, device, N, env.image_shape)
    next_done = torch.zeros(N, device=device)
    tracker = EpisodeTracker(N, device)
    start = time.perf_counter() - (history[-1]["wall_s"] if history else 0.0)

    bar = tqdm(
        range(first + 1, iterations + 1),
        unit="iter",
        desc="ppo",
        initial=first,
        total=iterations,
        disable=not (progress and rank.main),
    )
    for iteration in bar:
        if cfg.anneal_lr:
            fraction = 1.0 - (iteration - 1) / iterations
            for group, lr in zip(optimizer.param_groups, base_lrs):
                group["lr"] = fraction * lr

        # --- rollout ------------------------------------------------------------------------------
        for step in range(T):
            buffer.images[step], buffer.goals[step] = obs["image"], obs["goal"]
            buffer.dones[step] = next_done
            with torch.no_grad():
                action, logprob, _, value = policy.get_action_and_value(obs)  # [N,K,A], [N], _, [N]
            buffer.actions[step], buffer.logprobs[step], buffer.values[step] = action, logprob, value

            executed = policy.clip_actions(action)
            raw_obs, reward, terminated, truncated, info = env.step(executed if K > 1 else executed[:, 0])
            obs = obs_to_tensors(raw_obs, device, N, env.image_shape)
            reward = as_tensor(reward, device, torch.float32)  # [N]
            terminated = as_tensor(terminated, device, torch.bool)
            truncated = as_tensor(truncated, device, torch.bool)
            ended = terminated | truncated
            success = as_tensor(info["success"], device, torch.bool) if "success" in info else None
            tracker.update(reward, ended, success)

            if cfg.normalize_reward:
                reward = scaler(reward, ended)
            cut = truncated & ~terminated  # bootstrap: the episode would have gone on
            if cut.any():
                with torch.no_grad():
                    reward = reward + cfg.gamma * policy.value(final_obs(info, obs, cut)) * cut
            buffer.rewards[step] = reward
            next_done = ended.float()

        with torch.no_grad():
            buffer.next_value = policy.value(obs)  # [N]
        buffer.next_done = next_done
        value_only = iteration <= cfg.value_warmup_iterations
        losses = ppo_update(policy, optimizer, buffer, cfg, value_only, loss_fns[value_only])

        stats = {
            "iteration": float(iteration),
            "decisions": float(iteration * batch_size),
            "control_steps": float(iteration * batch_size * K),  # upper bound: chunks end early at episode ends
            "wall_s": time.perf_counter() - start,
            **losses,
            **tracker.pop(),
        }
        history.append(stats)
        if log is not None:
            log(iteration, stats)
        if (
            resume is not None
            and rank.main
            and cfg.checkpoint_every
            and (iteration % cfg.checkpoint_every == 0 or iteration == iterations)
        ):
            state = {"reward_scaler": [scaler.mean, scaler.var, scaler.count]}
            save_resume(resume, RESUME_FORMAT, policy, optimizer, iteration, config, history, state)
        if "episode/return" in stats:
            bar.set_postfix(ret=f"{stats['episode/return']:.3g}", success=f"{stats['episode/success']:.2f}")
    return history
