"""The IR's op set. Importing this package registers every core op.

The core op set (see docs/ops.md): pointwise (``elementwise``), reductions and norms
(``reduction``), compute ops (``nn``), data movement (``shape``) and the ``aten`` fallback.
Other packages add ops by calling :func:`register_op` in their own modules.
"""

from accel.ir.ops import elementwise, fallback, nn, reduction, shape  # noqa: F401
from accel.ir.ops.registry import Attr, OpDef, OpKind, all_ops, get_op, register_op

__all__ = ["Attr", "OpDef", "OpKind", "all_ops", "get_op", "register_op"]
