"""Errors raised by accel.

Every error accel raises derives from :class:`AccelError` and from the builtin it behaves
like (``ValueError``, ``TypeError``, ``RuntimeError``), so callers may catch either. Messages
name the op, node or pass involved and say what to do next.
"""

from __future__ import annotations


class AccelError(Exception):
    """Base class of every error accel raises."""


class AccelValueError(AccelError, ValueError):
    """A bad argument: an unknown name, an invalid option, a malformed pipeline string."""


class AccelTypeError(AccelError, TypeError):
    """An argument of the wrong kind: a non-module model, a non-tensor input."""


class CaptureError(AccelError, RuntimeError):
    """The model could not be captured into a graph (e.g. data-dependent control flow)."""


class GraphError(AccelError, RuntimeError):
    """The IR graph violates an invariant; raised by the verifier and the rewriter."""


class PassError(AccelError, RuntimeError):
    """A pass failed; the message names the pass and the node."""


class GuardError(AccelError, ValueError):
    """A call's inputs do not fit the compiled model (rank, dtype, device, count)."""


class ExportError(AccelError, RuntimeError):
    """The graph could not be exported (e.g. an op without an ONNX lowering)."""
