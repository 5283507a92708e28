"""Runtime: the one schedule every executor runs on, and the ``CompiledModel`` callable."""

from accel.runtime.compiled import AutoDynamic, CompiledModel, Executable, Specialization
from accel.runtime.guards import Guard, Mismatch
from accel.runtime.schedule import Arena, BufferPlan, Schedule, Step, Unit

__all__ = ["Arena", "AutoDynamic", "BufferPlan", "CompiledModel", "Executable", "Guard",
           "Mismatch", "Schedule", "Specialization", "Step", "Unit"]
