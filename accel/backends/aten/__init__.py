"""The aten backend: every node runs its op's ATen reference implementation."""

from accel.backends.aten.executor import AtenExecutor, bind

__all__ = ["AtenExecutor", "bind"]
