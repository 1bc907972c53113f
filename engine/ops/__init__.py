"""The op registry: every op a model file may use, by name."""
from .glue import GLUE_OPS
from .lstm import LSTM

OPS = {op.name: op for op in [LSTM, *GLUE_OPS]}
RECURRENT_OPS = {name for name, op in OPS.items() if op.recurrent}
