"""The Triton backend: kernel groups partitioned from the graph, one kernel each.

- :mod:`.kinds`: the table of kernel kinds, in claim order (start here);
- :mod:`.kernel`: what a kind declares (claim rule, emitter, launcher) and the group records;
- :mod:`.partition`: the partitioner and the claim helpers (prologues, epilogues);
- :mod:`.templates`: fused kinds whose source is generated (pointwise, reduction, matmul,
  attention);
- :mod:`.kernels`: single-node kinds on hand-written or library kernels (int8, tokens, 2:4);
- :mod:`.cache`: the on-disk kernel cache; :mod:`.lower`: lowering; :mod:`.executor`: the
  executor (one schedule, planned buffers, CUDA graphs).
"""
