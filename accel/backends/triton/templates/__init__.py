"""Triton templates: one module per fused kernel kind (pointwise, reduction, matmul,
attention), each with its claim rule, its source emitter and its launcher, plus the
expression pieces they share (:mod:`.expr`)."""
