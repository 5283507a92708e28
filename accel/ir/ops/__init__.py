"""The IR's op set. Importing this package registers every op.

Core ops (see docs/ops.md): pointwise (``elementwise``), reductions and norms
(``reduction``), compute ops (``nn``), data movement (``shape``) and the ``aten`` fallback.
Every other module in this package registers its own family of ops (quantized ops, token
reduction ops...): adding an op family is adding a file here.
"""

import importlib
import pkgutil

from accel.ir.ops import elementwise, fallback, nn, reduction, shape  # noqa: F401
from accel.ir.ops.registry import (
    Attr,
    OpDef,
    OpKind,
    all_ops,
    check_op_names,
    get_op,
    register_op,
)

for _m in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _m != "registry" and not _m.startswith("_"):
        importlib.import_module(f"{__name__}.{_m}")

__all__ = ["Attr", "OpDef", "OpKind", "all_ops", "check_op_names", "get_op", "register_op"]
