"""ONNX lowerings, one module per op family (core.py, quant.py, tokens.py...).

Every module here is imported by :func:`accel.backends.onnx.registry.load_lowerings`;
adding lowerings for a new op family is adding a file with ``@onnx_lowering`` functions.
"""
