"""Errors of the imagination layer; all are RoboscapeErrors with one-line messages naming the culprit."""

from roboscape_r_ros.errors import RoboscapeError


class ImaginationError(RoboscapeError, ValueError):
    """The imagination env cannot be built as asked (no episodes, no goal, mismatched sizes)."""


class GoalImageError(ImaginationError):
    """A user-given goal image of the wrong size or encoding; the message names the expected shape."""


class WorldModelMismatchError(ImaginationError):
    """A world model whose action dimension or frame size differs from the dataset's or the policy's."""


class ActionError(ImaginationError):
    """Actions passed to the env that break the batched-env contract (shape, NaN)."""
