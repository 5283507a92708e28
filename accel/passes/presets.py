"""The named pipelines. ``default`` is lossless: every pass in it preserves numerics up to
floating-point rounding. Lossy presets (``fast``, ``fastest``) are added as the lossy
passes land."""

from accel.passes.pipeline import register_preset

register_preset("default", "remove-noops,fold-constants,cse,dce",
                "lossless: cleanups (no-op removal, constant folding, CSE, DCE)")
