"""Action and goal world models over discrete frame tokens (RoboScape-R), with one public API."""

from roboscape_r_ros.world_model.checkpoint import CheckpointError
from roboscape_r_ros.world_model.config import (
    DynamicsConfig,
    TextConfig,
    TokenizerConfig,
    TrainConfig,
    WorldModelConfig,
)
from roboscape_r_ros.world_model.dynamics import State
from roboscape_r_ros.world_model.goal_model import GoalImagination
from roboscape_r_ros.world_model.model import WorldModel
from roboscape_r_ros.world_model.train import train_action_model, train_goal_model, train_tokenizer

__all__ = [
    "CheckpointError",
    "DynamicsConfig",
    "GoalImagination",
    "State",
    "TextConfig",
    "TokenizerConfig",
    "TrainConfig",
    "WorldModel",
    "WorldModelConfig",
    "train_action_model",
    "train_goal_model",
    "train_tokenizer",
]
