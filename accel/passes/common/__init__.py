"""Helpers shared by several passes. Nothing here is a pass: this package is never
auto-imported as a pass module, and passes import helpers from here, never from each other.

- :mod:`~accel.passes.common.batchnorm`: BatchNorm as a per-channel scale and shift.
- :mod:`~accel.passes.common.linears`: choosing linears to rewrite, calibration inputs and the
  per-layer SQNR report of the lossy linear passes (quantize, smoothquant, sparsify).
- :mod:`~accel.passes.common.transformer_blocks`: finding pre-norm transformer blocks and
  re-emitting a graph for a new token count (tome, prune-tokens).
"""
