"""Backends: each one a vertical slice that owns its lowering, its kernels and its executor.

- :mod:`accel.backends.aten`: the reference; every node runs its op's ATen implementation.
- :mod:`accel.backends.onnx`: standard-op ONNX lowering (for deployment and for the
  onnxruntime executor that runs the exported graph on CPU).
- :mod:`accel.backends.triton`: kernel groups partitioned from the graph, one Triton kernel
  each (templates and hand-written kernels), run by the Triton executor; ATen for the rest.

Every executor runs on the one :class:`~accel.runtime.schedule.Schedule`. Targets
(:mod:`accel.targets`) choose and combine backends; backends never import the frontend or
the passes.
"""
