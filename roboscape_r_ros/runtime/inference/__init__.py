"""Inference for the nodes: policy backends and world-model runners (torch or ONNX Runtime), hot reload."""
