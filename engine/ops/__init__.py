"""The op registry: every op a model file may use, by name."""
from .glue import GLUE_OPS
from .gru_rnn import GRU, RNN
from .layers import LAYER_OPS
from .lstm import LSTM

OPS = {op.name: op for op in [LSTM, GRU, RNN, *GLUE_OPS, *LAYER_OPS]}
RECURRENT_OPS = {name for name, op in OPS.items() if op.recurrent}
