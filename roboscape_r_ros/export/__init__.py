"""Trained models as ONNX files for the lab's inference runtime (``runtime.inference.runners``).

    roboscape-r export policy=outputs/demo/policies/imagination/imagination.safetensors output=policy.onnx

Every file carries what a deployment must agree on in its metadata (format, action and image sizes,
the preprocessing, the source checkpoint's SHA-256) and was checked against torch at export time.
"""
