"""Runtime: the one schedule every executor runs on, and the ``CompiledModel`` callable."""

from accel.runtime.compiled import CompiledModel, Executable, Specialization
from accel.runtime.schedule import Arena, BufferPlan, Schedule, Step, Unit

__all__ = ["Arena", "BufferPlan", "CompiledModel", "Executable", "Schedule", "Specialization",
           "Step", "Unit"]
