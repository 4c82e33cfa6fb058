"""Goal frames of imagined episodes: a bank of goal frames and, per context episode, which of them it may use.

    goal_model  (default, as in the paper) the goal world model imagines each context episode from its
                first frame and instruction; its goal frame is the first imagined frame whose done
                probability reaches the threshold (else its last imagined frame; `fired` says which)
    demo        the episode's own last frame when it succeeded, else the last frame of a random
                successful episode of the same task in the dataset
    image       one user-given image (PNG/JPEG file or uint8 array) for every episode

Imagined goals are computed once per context episode (greedy decoding makes them deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from roboscape_r_ros.data.reader import EpisodeArrays, EpisodeDataset
from roboscape_r_ros.imagination.errors import GoalImageError, ImaginationError


@dataclass
class GoalBank:
    frames: torch.Tensor  # uint8 [G,H,W,3] on the env's device
    candidates: list[np.ndarray]  # per context episode: indices into frames it draws its goal from
    source: str  # goal_model | demo | image
    fired: np.ndarray | None = None  # goal_model: did done reach the threshold, per context episode
    steps: np.ndarray | None = None  # goal_model: imagined step of each goal frame

    def draw(self, episodes: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """Goal-frame indices [b] for context episodes ``episodes`` [b] (positions in the pool)."""
        picks = [c[0] if len(c) == 1 else c[rng.integers(len(c))] for c in (self.candidates[e] for e in episodes)]
        return torch.as_tensor(np.asarray(picks, np.int64), device=self.frames.device)


def _expected(size: int | None) -> str:
    if size is None:
        return "an 8-bit RGB square image (uint8 [S,S,3])"
    return f"an 8-bit RGB {size}x{size} image (uint8 [{size},{size},3])"


def _fits(height: int, width: int, size: int | None) -> bool:
    return height == width and (size is None or height == size)


def load_goal_image(source: str | Path | np.ndarray | torch.Tensor, size: int | None) -> np.ndarray:
    """A goal image as uint8 [size,size,3] (``size`` None: any square size); anything else raises
    GoalImageError naming the expected shape.

    Files are decoded with Pillow (PNG, JPEG, ...). RGB is taken as is and RGBA only when fully
    opaque; other modes (grey, palette, 16-bit, CMYK) and other sizes are refused, not converted.
    """
    if isinstance(source, (np.ndarray, torch.Tensor)):
        array = source.detach().cpu().numpy() if isinstance(source, torch.Tensor) else source
        if array.ndim == 4 and array.shape[0] == 1:
            array = array[0]
        if (
            array.dtype != np.uint8
            or array.ndim != 3
            or array.shape[2] != 3
            or not _fits(array.shape[0], array.shape[1], size)
        ):
            raise GoalImageError(f"goal image array is {array.dtype} {list(array.shape)}; expected {_expected(size)}")
        return np.ascontiguousarray(array)
    from PIL import Image, UnidentifiedImageError

    path = Path(source)
    if not path.is_file():
        raise GoalImageError(f"goal image {path}: no such file (expected {_expected(size)})")
    try:
        with Image.open(path) as image:
            image.load()
            mode, (width, height) = image.mode, image.size
            array = np.asarray(image)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise GoalImageError(
            f"goal image {path}: not a readable image ({type(err).__name__}); expected {_expected(size)} as PNG or JPEG"
        ) from None
    if mode == "RGBA" and array.ndim == 3 and array.shape[-1] == 4 and (array[..., 3] == 255).all():
        array, mode = array[..., :3], "RGB"
    if mode != "RGB":
        raise GoalImageError(f"goal image {path}: pixel format {mode} ({width}x{height}); expected {_expected(size)}")
    if not _fits(height, width, size):
        why = "a square image" if size is None else "the world model's frame size"
        raise GoalImageError(
            f"goal image {path}: {width}x{height} pixels; expected {_expected(size)} ({why}; resize or crop it first)"
        )
    return np.ascontiguousarray(array, np.uint8)


def model_goal_bank(
    wm, first_frames: torch.Tensor, instructions: list[str], max_steps: int, batch_size: int = 64
) -> GoalBank:
    """Goal frames imagined by the goal world model from each episode's first frame [P,H,W,3]."""
    goals, fired, steps = [], [], []
    for begin in range(0, len(first_frames), batch_size):
        part = slice(begin, begin + batch_size)
        imagined = wm.imagine_goal(first_frames[part], instructions[part], max_steps=max_steps)
        goals.append(imagined.goal.to(first_frames.device))
        fired.append(imagined.fired.cpu().numpy())
        steps.append(imagined.goal_step.cpu().numpy())
    frames = torch.cat(goals)
    return GoalBank(
        frames, [np.array([i]) for i in range(len(frames))], "goal_model", np.concatenate(fired), np.concatenate(steps)
    )


def demo_goal_bank(dataset: EpisodeDataset, arrays: EpisodeArrays, pool: list[int], device: torch.device) -> GoalBank:
    """Last frames of successful episodes: the episode's own when it succeeded, else those of its task."""
    successful = [m.index for m in dataset.episodes if m.success]
    if not successful:
        raise ImaginationError(
            f"{dataset.root}: goal=demo needs successful episodes, the dataset has none "
            f"(of {dataset.num_episodes}); use goal=goal_model or goal=image"
        )
    bank_of = {e: i for i, e in enumerate(successful)}
    last = arrays.starts[successful] + arrays.lengths[successful] - 1
    frames = torch.as_tensor(arrays.frames[last], device=device)
    by_task: dict[str, list[int]] = {}
    for e in successful:
        by_task.setdefault(dataset.episodes[e].task, []).append(bank_of[e])
    candidates = []
    for e in pool:
        meta = dataset.episodes[e]
        if meta.success:
            candidates.append(np.array([bank_of[e]]))
        elif meta.task in by_task:
            candidates.append(np.array(by_task[meta.task]))
        else:
            raise ImaginationError(
                f"{dataset.root}: goal=demo: task {meta.task} has no successful episode to take "
                "a goal frame from; use goal=goal_model or goal=image"
            )
    return GoalBank(frames, candidates, "demo")


def image_goal_bank(image: np.ndarray, pool_size: int, device: torch.device) -> GoalBank:
    return GoalBank(torch.as_tensor(np.array(image), device=device)[None], [np.array([0])] * pool_size, "image")
