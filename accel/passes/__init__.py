"""Graph -> Graph passes, their registry, pipelines and presets.

Every module in this package is imported on first use, so a pass registers itself by
living here: one pass (or one family of passes) per file. The infrastructure modules below
(patterns, registry, pipelines, presets) and the helpers shared by passes
(:mod:`accel.passes.common`) are not passes.
"""

import importlib
import pkgutil

from accel.passes.pattern import Match, Pat, RewriteRules, Var
from accel.passes.pipeline import (
    PRESETS,
    PassStep,
    format_pipeline,
    parse_pipeline,
    register_preset,
    run_pipeline,
)
from accel.passes.registry import PassContext, PassInfo, all_passes, get_pass, register_pass

_INFRA = {"common", "pattern", "pipeline", "registry", "presets"}
for _m in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _m not in _INFRA and not _m.startswith("_"):
        importlib.import_module(f"{__name__}.{_m}")
importlib.import_module(f"{__name__}.presets")

__all__ = [
    "PRESETS", "Match", "Pat", "PassContext", "PassInfo", "PassStep", "RewriteRules", "Var",
    "all_passes", "format_pipeline", "get_pass", "parse_pipeline", "register_pass",
    "register_preset", "run_pipeline",
]
