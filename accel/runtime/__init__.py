"""Runtime: executors of compiled graphs and the ``CompiledModel`` callable."""

from accel.runtime.compiled import CompiledModel, Specialization
from accel.runtime.executor import AtenExecutor, Schedule, Step

__all__ = ["AtenExecutor", "CompiledModel", "Schedule", "Specialization", "Step"]
