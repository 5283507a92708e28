"""Code generation from the optimized IR: Triton kernels (triton/) and ONNX (onnx/)."""
