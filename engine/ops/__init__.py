"""The op registry: every op a model file may use, by name."""
from .control import CONTROL_OPS
from .glue import GLUE_OPS
from .layers import LAYER_OPS
from .recurrent import RECURRENT_OPS
from .vision import VISION_OPS

OPS = {op.name: op for op in [*RECURRENT_OPS, *GLUE_OPS, *LAYER_OPS, *VISION_OPS, *CONTROL_OPS]}
RECURRENT_OP_NAMES = {name for name, op in OPS.items() if op.recurrent}
