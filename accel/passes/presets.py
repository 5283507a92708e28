"""The named pipelines. ``default`` is lossless: every pass in it preserves numerics up to
floating-point rounding. Lossy presets (``fast``, ``fastest``) are added as the lossy
passes land."""

from accel.passes.pipeline import register_preset

register_preset("default", "fold-constants,remove-noops,fold-bn,merge-branches,fold-bn,fold-scale,"
                "fold-layernorm,repavit,canonicalize-attention,fold-linear,fold-constants,"
                "remove-noops,cse,dce",
                "lossless: reparameterization (BN/scale/LayerNorm/linear folds, branch merges, "
                "RePaViT, attention canonicalization) then cleanups")
register_preset("fast", "default,quantize{mode=int8-dynamic,act=per-tensor}",
                "lossy: default + int8 dynamic quantization of linears (per-tensor activations: "
                "onnxruntime's fused int8 kernel on CPU)")
register_preset("fastest",
                "default,tome{r=13,metric=tokens},quantize{mode=int8-dynamic,act=per-tensor}",
                "lossy: default + token merging (r=13 per block, ~40% fewer FLOPs on ViT-S/16, "
                "matched on the tokens: the least cost measured on the digits ViT in "
                "benchmarks/tome.py, not measured on ImageNet ViTs; skips models without "
                "tokens) + int8 dynamic")
