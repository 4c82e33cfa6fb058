"""RL in imagination: the world model as a batched env, and the endogenous reward it provides.

reward.py         r = (1 - D(pred, goal)) - offset + bonus * [done >= threshold], goal embeddings cached per row
goals.py          goal frames: the goal world model's imagined goal (default), a demo's last frame, a user image
env.py            ImaginationEnv: the rl/vec.py batched-env contract over WorldModel, tensors on its device
"""

from roboscape_r_ros.imagination.env import ImaginationConfig, ImaginationEnv, make_imagination_env, resolve_world_model
from roboscape_r_ros.imagination.errors import ActionError, GoalImageError, ImaginationError, WorldModelMismatchError
from roboscape_r_ros.imagination.goals import load_goal_image
from roboscape_r_ros.imagination.reward import EndogenousReward, RewardConfig, RewardTerms, endogenous_reward

__all__ = [
    "ActionError",
    "EndogenousReward",
    "GoalImageError",
    "ImaginationConfig",
    "ImaginationEnv",
    "ImaginationError",
    "RewardConfig",
    "RewardTerms",
    "WorldModelMismatchError",
    "endogenous_reward",
    "load_goal_image",
    "make_imagination_env",
    "resolve_world_model",
]
