"""A torch module as an ONNX graph, checked against torch before anything is written.

    graph = Graph("policy", module, ("image", "goal"), ("action",), cases=[{...}, {...}], tolerances={"action": 1e-4})
    model, diffs = to_onnx(graph)                 # ExportError when an output differs by more than its tolerance
    write_onnx(path, model, {"format": ..., "source_sha256": sha256(checkpoint), ...})

Every input and output has a dynamic axis 0 (``batch``) unless ``axes`` names its dynamic axes. ``cases`` are the parity
inputs (numpy, by input name): the first one is also the trace's example, so give the batch-1 case
first and a larger batch after it, which is what catches a batch size frozen into the graph. Each
output's difference is ``max |onnxruntime - torch|`` in its own units over all cases: float outputs
in their values, integer outputs (token ids, uint8 pixels) in ids or intensity levels.

The exporter is torch's TorchScript one (``dynamo=False``): it needs no onnxscript, and these graphs
have no data-dependent control flow for the newer exporter to capture.
"""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.files import write_atomic

OPSET = 17
PARITY_BATCHES = (1, 16)


class ExportError(RoboscapeError):
    """An export that cannot be made or does not match torch."""


@dataclass
class Graph:
    name: str  # for messages only
    module: nn.Module
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    cases: list[dict[str, np.ndarray]]
    tolerances: dict[str, float]  # per output: the largest accepted max |onnxruntime - torch|
    axes: dict[str, dict[int, str]] = field(default_factory=dict)  # dynamic axes by name (default {0: "batch"})


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parity_frames(size: int, batch: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)


def first_line(err: Exception) -> str:
    return (str(err).splitlines() or [""])[0][:200]


def _torch_outputs(graph: Graph, case: dict[str, np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        out = graph.module(*(torch.from_numpy(case[name]) for name in graph.inputs))
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def to_onnx(graph: Graph):
    """Trace ``graph.module``, run the result in ONNX Runtime on every case -> (onnx.ModelProto, diffs by output)."""
    import onnx
    import onnxruntime as ort

    graph.module.eval()
    axes = {name: graph.axes.get(name, {0: "batch"}) for name in (*graph.inputs, *graph.outputs)}
    example = tuple(torch.from_numpy(graph.cases[0][name]) for name in graph.inputs)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "graph.onnx"  # not the name: a policy's name is its checkpoint path
        with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer notices: chosen on purpose
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(
                    graph.module,
                    example,
                    str(raw),
                    input_names=list(graph.inputs),
                    output_names=list(graph.outputs),
                    dynamic_axes=axes,
                    opset_version=OPSET,
                    dynamo=False,
                )
            except (RuntimeError, torch.onnx.errors.OnnxExporterError) as err:
                raise ExportError(
                    f"{graph.name}: torch cannot export it to ONNX ({str(err).splitlines()[0]})"
                ) from None
        model = onnx.load(str(raw))

    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as err:  # ONNX Runtime's own exception types
        raise ExportError(f"{graph.name}: ONNX Runtime cannot load the exported graph ({first_line(err)})") from None
    diffs = dict.fromkeys(graph.outputs, 0.0)
    for case in graph.cases:
        expected = _torch_outputs(graph, case)
        try:
            found = session.run(list(graph.outputs), {name: np.ascontiguousarray(case[name]) for name in graph.inputs})
        except Exception as err:  # e.g. a size the tracer froze into the graph: the batch-16 case fails here
            shapes = ", ".join(f"{name} {list(case[name].shape)}" for name in graph.inputs)
            raise ExportError(f"{graph.name}: the ONNX graph fails on {shapes} ({first_line(err)})") from None
        for name, want, got in zip(graph.outputs, expected, found):
            if want.shape != got.shape:
                raise ExportError(
                    f"{graph.name}: ONNX Runtime gives {name} {list(got.shape)}, torch {list(want.shape)}"
                )
            diff = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max(initial=0.0))
            diffs[name] = max(diffs[name], diff)
    over = [f"{name} by {diffs[name]:.3g} (tolerance {graph.tolerances[name]:g})" for name in graph.outputs
            if not diffs[name] <= graph.tolerances[name]]  # fmt: skip
    if over:
        raise ExportError(f"{graph.name}: ONNX Runtime and torch differ: {', '.join(over)}; nothing written")
    return model, diffs


def write_onnx(path: str | Path, model, metadata: dict[str, str]) -> Path:
    """``model`` with ``metadata`` as its metadata_props (ONNX Runtime's custom_metadata_map), written atomically."""
    import onnx

    onnx.helper.set_model_props(model, metadata)
    return write_atomic(path, model.SerializeToString())
