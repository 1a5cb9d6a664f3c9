"""Inference, networks: hepinfer.nn.Model (ONNX import, kernels, jagged input, the CUDA plan on the host) against onnxruntime."""
