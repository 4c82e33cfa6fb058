"""The world-model pieces the dreamer and reward_publisher run, as ONNX files in one folder.

    encode.onnx   frames uint8 [B,H,W,3] RGB                     -> tokens int64 [B,N]  (tokenizer + FSQ)
    context.onnx  tokens int64 [B,T,N], actions float32 [B,T-1,A] -> kv float32 [L,2,B,N,C,D], valid bool [B,C],
                                                                     done float32 [B,T]  (prefill + done head)
    step.onnx     kv, valid, action float32 [B,A]                 -> kv, valid, tokens int64 [B,N], done float32 [B]
                                                                     (one greedy MaskGIT prediction + done head)
    decode.onnx   tokens int64 [B,N]                              -> frames uint8 [B,H,W,3]
    effnet.onnx   frames uint8 [B,H,W,3]                          -> feature_0..4 float32 [B,c,h,w] (the reward's
                                                                     perceptual network, channel-normalised
                                                                     features; D compares two frames' features)

N = (H/8)^2 tokens per frame, C = context_length - 1 cached frames, T in 1..C context frames (both B and
T are dynamic axes). The dreamer's world-model step is step then decode; a reset (and each shadow-mode
prediction) encodes its real frames first, holds static patches' tokens (token_hold_threshold; plain
index work the runtime does on the ids) and runs context. The preprocessing (uint8 -> [-1, 1] for the
tokenizer, (x - 127) / 128 after the resize for EfficientNet) is inside the graphs.

Parity runs on real frames: windows of the run's dataset (split.json) when it is readable, else seeded
random frames and actions (the metadata says which). Tolerances: ``tolerance`` for float outputs (kv,
done, features); token ids and the ``valid`` mask must be equal; decoded frames may differ by one
intensity level (a float difference of 1e-6 can round a pixel the other way).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from roboscape_r_ros.config import to_dict
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.export.graph import PARITY_BATCHES, ExportError, Graph, parity_frames, sha256, to_onnx, write_onnx
from roboscape_r_ros.world_model.dynamics import State
from roboscape_r_ros.world_model.model import WorldModel
from roboscape_r_ros.world_model.rollout import gather, spread_windows

WM_ONNX_FORMAT = "roboscape_r_ros.world_model.onnx/1"  # metadata "format" of every exported piece
PIECES = ("encode", "context", "step", "decode")
ONNX_FOLDER = "onnx"  # the default output folder, inside the run folder (beside world_model.safetensors)
PERCEPTUAL = "effnet"
PREPROCESSING = {
    "encode": "inside the graph: uint8 RGB x -> x / 127.5 - 1",
    "decode": "inside the graph: output y in [-1, 1] -> round((y + 1) * 127.5) as uint8 RGB",
}


class _Piece(nn.Module):
    """One exported piece: a forward over the world model's modules."""

    def __init__(self, wm: WorldModel):
        super().__init__()
        self.wm = wm


class Encode(_Piece):
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.wm.tokenizer.encode(frames).flatten(-2)  # [B,N]


class Context(_Piece):
    def forward(self, tokens: torch.Tensor, actions: torch.Tensor):
        state, done_logits = self.wm.dynamics.prefill(tokens, self.wm.actions.context(actions))
        return state.kv, state.valid, torch.sigmoid(done_logits)


class Step(_Piece):
    def forward(self, kv: torch.Tensor, valid: torch.Tensor, action: torch.Tensor):
        state, tokens, done_logit, _ = self.wm.dynamics.predict_next(State(kv, valid), self.wm.actions.next(action))
        return state.kv, state.valid, tokens, torch.sigmoid(done_logit)


class Decode(_Piece):
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.wm.decode(tokens)  # uint8 [B,H,W,3]


class Features(nn.Module):
    """The perceptual distance's embedding of uint8 frames (EffNetDistance.embed), each feature map unit length
    over its channels at every location: the first thing the distance does with it (normalising again is a
    no-op), and it puts every output in [-1, 1], where one absolute tolerance fits all five layers."""

    def __init__(self, distance):
        super().__init__()
        self.distance = distance

    def forward(self, frames: torch.Tensor):
        return tuple(F.normalize(f, dim=1, eps=1e-10) for f in self.distance.embed(frames))


@dataclass(frozen=True)
class ParityInputs:
    """Real (or seeded random) context windows: what every piece's parity cases are cut from."""

    frames: np.ndarray  # uint8 [n,C,H,W,3], n >= max(PARITY_BATCHES)
    actions: np.ndarray  # float32 [n,C,A]: C-1 between the frames, then the next step's
    source: str


def parity_inputs(wm: WorldModel, dataset: str, seed: int = 0) -> ParityInputs:
    """Windows of ``dataset`` (every episode long enough), else seeded random frames and actions."""
    n, C, cfg = max(PARITY_BATCHES), wm.dynamics.capacity, wm.cfg
    if dataset:
        try:
            data = EpisodeDataset.open(dataset)
            arrays = data.load_arrays()
        except RoboscapeError:
            data = None
        if data is not None and tuple(data.image_shape) == (cfg.image_size,) * 2 + (3,):
            episodes, starts = spread_windows(arrays, range(data.num_episodes), C, 1, cfg.frame_skip, n)
            if len(episodes) >= n:
                pick = np.random.default_rng(seed).choice(len(episodes), n, replace=False)
                w = gather(arrays, episodes[pick], starts[pick], C, 1, cfg.frame_skip)
                actions = np.concatenate([w.context_actions, w.actions], 1).astype(np.float32)
                return ParityInputs(w.context, actions, f"{n} windows of dataset {data.root}")
    rng = np.random.default_rng(seed)
    frames = parity_frames(cfg.image_size, n * C, seed).reshape(n, C, cfg.image_size, cfg.image_size, 3)
    actions = rng.uniform(-1, 1, (n, C, cfg.action_dim)).astype(np.float32)
    return ParityInputs(frames, actions, f"{n} windows of seeded random frames and actions")


def world_model_graphs(wm: WorldModel, inputs: ParityInputs, tolerance: float) -> list[Graph]:
    """The four world-model pieces with parity cases at batch 1 and 16 (and a one-frame context)."""
    if wm.cfg.dynamics.temperature > 0:
        raise ExportError(
            f"dynamics.temperature={wm.cfg.dynamics.temperature}: only greedy decoding (temperature 0) is exported; "
            "sampling draws random numbers ONNX Runtime would draw differently"
        )
    frames, actions = inputs.frames, inputs.actions
    C = wm.dynamics.capacity
    with torch.no_grad():
        tokens = wm.window_tokens(torch.from_numpy(frames)).numpy()  # [n,C,N], static patches held
        contexts = [(1, C), (max(PARITY_BATCHES), C)] + ([(max(PARITY_BATCHES), 1)] if C > 1 else [])
        context_cases = [
            {"tokens": tokens[:b, C - t :], "actions": np.ascontiguousarray(actions[:b, C - t : C - 1])}
            for b, t in contexts
        ]
        step_cases = []
        for case in context_cases:
            kv, valid, _ = Context(wm)(*(torch.from_numpy(case[k]) for k in ("tokens", "actions")))
            b = kv.shape[2]
            step_cases.append({"kv": kv.numpy(), "valid": valid.numpy(), "action": actions[:b, C - 1]})
    flat = frames[:, -1]
    exact, levels = 0.0, 1.0
    return [
        Graph(
            "encode",
            Encode(wm),
            ("frames",),
            ("tokens",),
            [{"frames": flat[:b]} for b in PARITY_BATCHES],
            {"tokens": exact},
        ),
        Graph(
            "context",
            Context(wm),
            ("tokens", "actions"),
            ("kv", "valid", "done"),
            context_cases,
            {"kv": tolerance, "valid": exact, "done": tolerance},
            axes={
                "tokens": {0: "batch", 1: "frames"},
                "actions": {0: "batch", 1: "steps"},
                "kv": {2: "batch"},
                "done": {0: "batch", 1: "frames"},
            },
        ),
        Graph(
            "step",
            Step(wm),
            ("kv", "valid", "action"),
            ("next_kv", "next_valid", "tokens", "done"),
            step_cases,
            {"next_kv": tolerance, "next_valid": exact, "tokens": exact, "done": tolerance},
            axes={"kv": {2: "batch"}, "next_kv": {2: "batch"}},
        ),
        Graph(
            "decode",
            Decode(wm),
            ("tokens",),
            ("frames",),
            [{"tokens": tokens[:b, -1]} for b in PARITY_BATCHES],
            {"frames": levels},
        ),
    ]


def perceptual_graph(frames: np.ndarray, resolution: int, tolerance: float) -> Graph:
    """EfficientNet-Lite0's features (the reward's default distance) of uint8 frames at their own size."""
    from roboscape_r_ros.perception.effnet import TAPS, EffNetDistance

    outputs = tuple(f"feature_{i}" for i in range(len(TAPS)))
    return Graph(
        PERCEPTUAL,
        Features(EffNetDistance(resolution=resolution)),
        ("frames",),
        outputs,
        [{"frames": frames[:b]} for b in PARITY_BATCHES],
        dict.fromkeys(outputs, tolerance),
    )


@dataclass(frozen=True)
class WorldModelExport:
    folder: Path
    files: dict[str, Path]  # by piece
    max_abs_diff: dict[str, dict[str, float]]  # by piece, then output
    parity_inputs: str


def describe(graph: Graph) -> tuple[str, str]:
    """'name dtype [dims]' of the inputs and outputs, dynamic axes by name (from the batch-1 case)."""

    def each(names, arrays):
        parts = []
        for name, array in zip(names, arrays):
            axes = graph.axes.get(name, {0: "batch"})
            dims = ", ".join(str(axes.get(i, size)) for i, size in enumerate(array.shape))
            parts.append(f"{name}: {array.dtype} [{dims}]")
        return "; ".join(parts)

    case = graph.cases[0]
    with torch.no_grad():
        out = graph.module(*(torch.from_numpy(case[n]) for n in graph.inputs))
    out = out if isinstance(out, tuple) else (out,)
    return each(graph.inputs, (case[n] for n in graph.inputs)), each(graph.outputs, (o.numpy() for o in out))


def export_world_model(
    run: str | Path, output: str | Path = "", tolerance: float = 1e-4, perceptual_resolution: int | None = 128
) -> WorldModelExport:
    """Write a world-model run's pieces (and, unless ``perceptual_resolution`` is None, the effnet features
    at that input side) as ONNX files into ``output`` (default <run>/onnx), once every one matches torch."""
    from roboscape_r_ros.imagination.env import resolve_world_model

    found = resolve_world_model(run)
    wm = WorldModel.from_checkpoint(found.checkpoint)
    inputs = parity_inputs(wm, (found.split or {}).get("dataset", ""))
    graphs = world_model_graphs(wm, inputs, tolerance)
    if perceptual_resolution is not None:
        graphs.append(perceptual_graph(inputs.frames[:, -1], perceptual_resolution, tolerance))
    common = {
        "format": WM_ONNX_FORMAT,
        "config": json.dumps(to_dict(wm.cfg)),
        "image_size": str(wm.cfg.image_size),
        "action_dim": str(wm.cfg.action_dim),
        "tokens_per_frame": str(wm.grid**2),
        "context_frames": str(wm.dynamics.capacity),
        "source": found.checkpoint.name,
        "source_sha256": sha256(found.checkpoint),
        "parity_inputs": inputs.source,
        "torch": torch.__version__,
    }
    exported = [(graph, *to_onnx(graph)) for graph in graphs]  # every check before the first file
    folder = Path(output) if str(output) else found.checkpoint.parent / ONNX_FOLDER
    files, diffs = {}, {}
    for graph, model, diff in exported:
        ins, outs = describe(graph)
        metadata = {**common, "piece": graph.name, "inputs": ins, "outputs": outs}
        metadata["parity_max_abs_diff"] = json.dumps({k: float(f"{v:.3g}") for k, v in diff.items()})
        if graph.name == PERCEPTUAL:
            from roboscape_r_ros.perception.effnet import wheel_weights

            distance = graph.module.distance
            metadata |= {
                "weights": wheel_weights().name,
                "weights_sha256": sha256(wheel_weights()),
                "preprocessing": f"inside the graph: uint8 RGB x -> x / 255, bilinear resize to {distance.resolution} "
                "(0: none), then (255 x - 127) / 128",
                "perceptual_backend": PERCEPTUAL,
                "resolution": str(distance.resolution),
            }
        elif graph.name in PREPROCESSING:
            metadata["preprocessing"] = PREPROCESSING[graph.name]
        files[graph.name] = write_onnx(folder / f"{graph.name}.onnx", model, metadata)
        diffs[graph.name] = diff
    return WorldModelExport(folder, files, diffs, inputs.source)
