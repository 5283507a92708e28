"""Hand-written kernels, one module per single-node kind: int8 linears with fused
dequantization (:mod:`.int8`), int4/int8 weight-only linears dequantized inside the K loop
(:mod:`.weight_only`), token merging and pruning (:mod:`.tokens`), and the 2:4
semi-structured sparse linears on CUDA's library kernels (:mod:`.sparse24`)."""
