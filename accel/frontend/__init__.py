"""Frontends: capture a model (torch.export, an fx GraphModule, TorchDynamo) into the IR."""

from accel.frontend.capture import as_module, capture, capture_fx, check_example_inputs

__all__ = ["as_module", "capture", "capture_fx", "check_example_inputs"]
