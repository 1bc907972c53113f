"""One handler per ONNX op, by family; importing this package registers them all (registry.py)."""
from . import control, layers, recurrent, shape_glue, vision  # noqa: F401
