"""The recurrent ops: LSTM, GRU and RNN, siblings of one base class.

Canonical nodes (what the converters write; every attribute present, weights in ONNX gate order):

    LSTM  inputs  [X, W, R, B, sequence_lens, initial_h, initial_c, P, W_proj]   ("" = absent)
              W (D, 4H, I) i, o, f, c;  R (D, 4H, Hout);  B (D, 8H) Wb then Rb;  P (D, 3H) i, o, f;
              W_proj (D, Hout, H) (PyTorch's proj_size; no ONNX equivalent)
          outputs [Y, Y_h, Y_c];  attrs: hidden_size, direction, layout, activations [[name, alpha, beta] * 3D],
              clip (null = none), input_forget, proj_size (0 = none)
    GRU   inputs  [X, W, R, B, sequence_lens, initial_h]
              W (D, 3H, I) z, r, h;  R (D, 3H, H);  B (D, 6H)
          outputs [Y, Y_h];  attrs: ... activations [[name, alpha, beta] * 2D], linear_before_reset
    RNN   W (D, H, I), R (D, H, H), B (D, 2H); outputs [Y, Y_h]; activations [[name, alpha, beta] * D]

The planner lays every recurrent node out the same way for the kernels (``run_recurrent``): X time-major (T, B, I),
the state (D, B, Hout) updated in place (in a stream, the stream's state buffer itself), Y (T, D, B, Hout). Layout 1
(batch-first) is two strided copies around that. Packed weights per direction (``pack``) are named:

    LSTM  WT (D, I, 4H), RT (D, Hout, 4H), bias (D, 4H) = Wb + Rb, peep (D|1, 3H)  [+ projT (D, H, Hout)]
          several threads: WTp, RTp (D, parts, ., 4*chunk), biasp (D, parts, 1, 4*chunk)  (pack_parts)
    GRU   WT (D, I, 3H), RTzr (D, H, 2H) z, r, RTh (D, H, H), bias (D, 4H) = [Wbz+Rbz, Wbr+Rbr, Wbh, Rbh]
    RNN   WT (D, I, H), RT (D, H, H), bias (D, H) = Wb + Rb

The op classes plan and pack without Numba; their run function is in recurrent_kernels.py.
"""
import numpy as np

from .. import runtime
from ..errors import ModelFileError, UnsupportedModelError
from .activations import ACTIVATIONS, codes_of
from .base import Op, const_tensor, require_attrs
from .program import ABSENT, BLAS_MIN_BATCH, F_STATE, KEEP, PARALLEL_MIN_HIDDEN, RECURRENT_BASE

DIRECTIONS = {"forward": (0,), "reverse": (1,), "bidirectional": (0, 1)}
LSTM_FAST, LSTM_FAST_MT, LSTM_GENERIC, GRU_CODE, RNN_CODE = range(RECURRENT_BASE, RECURRENT_BASE + 5)

# the params every recurrent instruction starts with (offsets after the [opcode, length, node] header)
P_X, P_DIMS, P_SEQ, P_LENS, P_H, P_H0, P_C, P_C0, P_Y, P_XW, P_SCRATCH, P_CLIP, P_REV, P_OWN = (
    0, 2, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 27, 29)


# ---------------------------------------------------------------------- packing
def pack_parts(RT, nparts):
    """RT (D, rows, 4H) -> (D, nparts, rows, 4*chunk): part p's columns (its hidden units in each of the blocks
    i, o, f, c), contiguous, so that each thread runs the same vectorised product on its own slice. Used for RT,
    WT (rows = input size) and the bias (rows = 1)."""
    D, Hout, G = RT.shape
    H = G // 4
    chunk = -(-H // nparts)
    out = np.zeros((D, nparts, Hout, 4 * chunk), dtype=RT.dtype)
    for p in range(nparts):
        j0, j1 = p * chunk, min(H, (p + 1) * chunk)
        for q in range(4):
            out[:, p, :, q * chunk:q * chunk + (j1 - j0)] = RT[:, :, q * H + j0:q * H + j1]
    return out


# ---------------------------------------------------------------------- the ops
class Recurrent(Op):
    """What LSTM, GRU and RNN share: attribute checks, weight checks, the plan (layouts, state, outputs)."""
    recurrent = True
    packed_inputs = (1, 2, 3, 7, 8)      # W, R, B, P, W_proj: read only through pack()
    n_gates = 1
    default_acts = ()
    n_inputs = 6
    own_flags = ()                       # 0/1 attributes of the op's own
    outputs = ("Y", "Y_h")
    state_names = ("h",)

    # ------------------------------------------------------------------ checks
    @classmethod
    def directions(cls, node):
        return len(DIRECTIONS[node.attrs["direction"]])

    @classmethod
    def out_size(cls, a):
        return a["hidden_size"]

    @classmethod
    def validate(cls, node, model):
        names = ("hidden_size", "direction", "layout", "activations", "clip") + cls.own_flags + cls.extra_attrs()
        a = require_attrs(node, names)
        H = a["hidden_size"]
        if not isinstance(H, int) or isinstance(H, bool) or H < 1:
            raise ModelFileError(f"node {node.name!r}: hidden_size must be a positive integer, got {H!r}")
        if a["direction"] not in DIRECTIONS:
            raise UnsupportedModelError(f"node {node.name!r}: direction {a['direction']!r} is not one of "
                                        f"forward, reverse, bidirectional")
        if a["layout"] not in (0, 1):
            raise UnsupportedModelError(f"node {node.name!r}: layout must be 0 or 1, got {a['layout']!r}")
        D = len(DIRECTIONS[a["direction"]])
        acts = a["activations"]
        if not isinstance(acts, list) or len(acts) != len(cls.default_acts) * D:
            raise ModelFileError(f"node {node.name!r}: expected {len(cls.default_acts) * D} activations, got {acts!r}")
        for act in acts:
            if (not isinstance(act, list) or len(act) != 3 or not isinstance(act[0], str)
                    or act[0].lower() not in ACTIVATIONS
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in act[1:])):
                raise UnsupportedModelError(f"node {node.name!r}: unsupported activation {act!r}")
        clip = a["clip"]
        if clip is not None and not (isinstance(clip, (int, float)) and not isinstance(clip, bool) and clip > 0):
            raise ModelFileError(f"node {node.name!r}: clip must be a positive number or null, got {clip!r}")
        for key in cls.own_flags:
            if a[key] not in (0, 1) or isinstance(a[key], bool):
                raise ModelFileError(f"node {node.name!r}: {key} must be 0 or 1")
        cls.validate_extra(node, a)
        if len(node.inputs) > cls.n_inputs:
            raise ModelFileError(f"node {node.name!r}: too many inputs ({len(node.inputs)})")
        if not node.inputs or not node.inputs[0]:
            raise ModelFileError(f"node {node.name!r}: input X is required")
        Hout, G = cls.out_size(a), cls.n_gates
        W = const_tensor(node, model, 1, "W", required=True)
        if W.ndim != 3 or W.shape[0] != D or W.shape[1] != G * H or W.shape[2] < 1:
            raise ModelFileError(f"node {node.name!r}: W has shape {W.shape}, expected ({D}, {G * H}, input_size)")
        R = const_tensor(node, model, 2, "R", required=True)
        if R.shape != (D, G * H, Hout):
            raise ModelFileError(f"node {node.name!r}: R has shape {R.shape}, expected {(D, G * H, Hout)}")
        Bt = const_tensor(node, model, 3, "B")
        if Bt is not None and Bt.shape != (D, 2 * G * H):
            raise ModelFileError(f"node {node.name!r}: B has shape {Bt.shape}, expected {(D, 2 * G * H)}")
        cls.validate_tensors(node, model, a, D, H, Hout)
        if len(node.outputs) > len(cls.outputs) or not any(node.outputs):
            raise ModelFileError(f"node {node.name!r}: needs one to {len(cls.outputs)} outputs "
                                 f"({', '.join(cls.outputs)})")

    @classmethod
    def extra_attrs(cls):
        return ()

    @classmethod
    def validate_extra(cls, node, a):
        pass

    @classmethod
    def validate_tensors(cls, node, model, a, D, H, Hout):
        pass

    @classmethod
    def reads(cls, node, streaming):
        """In a stream the initial state comes from the stream's state, not from initial_h / initial_c."""
        return [name for i, name in enumerate(node.inputs) if name and not (streaming and i in (5, 6))]

    # ------------------------------------------------------------------ packing
    @classmethod
    def _tensors(cls, node, model, dtype):
        """(D, H, W, R, B) as arrays of the compute dtype; B zeros when absent."""
        a = node.attrs
        D, H = cls.directions(node), a["hidden_size"]
        ins = list(node.inputs) + [""] * (cls.n_inputs - len(node.inputs))
        W = model.tensors[ins[1]].astype(dtype)
        R = model.tensors[ins[2]].astype(dtype)
        Bt = model.tensors[ins[3]].astype(dtype) if ins[3] else np.zeros((D, 2 * cls.n_gates * H), dtype)
        return D, H, W, R, Bt

    @classmethod
    def default_activations(cls, node):
        D = cls.directions(node)
        return [act[0] for act in node.attrs["activations"]] == list(cls.default_acts) * D

    @classmethod
    def fast(cls, node, dtype):
        """float32 with the default activations: the vectorised sigmoid/tanh kernels."""
        return np.dtype(dtype) == np.float32 and cls.default_activations(node)

    # ------------------------------------------------------------------ streaming
    @classmethod
    def state_shapes(cls, node, model, batch):
        """The stream state as users see it, in the node's layout: (D, B, .) or (B, D, .) for layout 1."""
        D = cls.directions(node)
        sizes = [cls.out_size(node.attrs), node.attrs["hidden_size"]][:len(cls.state_names)]
        if node.attrs["layout"] == 1:
            return [(batch, D, k) for k in sizes]
        return [(D, batch, k) for k in sizes]

    @classmethod
    def kernel_state_shapes(cls, node, batch):
        """The stream state as the kernels keep it: (D, B, .) whatever the layout."""
        D = cls.directions(node)
        sizes = [cls.out_size(node.attrs), node.attrs["hidden_size"]][:len(cls.state_names)]
        return [(D, batch, k) for k in sizes]

    # ------------------------------------------------------------------ planning
    @classmethod
    def own_params(cls, node, p, variant):
        """The op's own params after the common ones (see run_recurrent)."""
        raise NotImplementedError

    @classmethod
    def variant(cls, node, p, B):
        raise NotImplementedError

    @classmethod
    def plan(cls, node, p):
        a = node.attrs
        D, H, Hout, layout, G = cls.directions(node), a["hidden_size"], cls.out_size(a), a["layout"], cls.n_gates
        X = p.input(0)
        if X.kind != "f" or X.rank != 3:
            raise p.error(f"X must be a rank-3 float tensor, got shape {X.shape}")
        if layout == 1:
            B, T, In = X.shape
            Xt = p.new_temp_like(X)
            Xt.shape = (T, B, In)
            p.copy(X, Xt, shape=(T, B, In), sstrides=(In, T * In, 1))
            X = Xt
        T, B, In = X.shape
        W_in = p.model.tensors[node.inputs[1]].shape[2]
        if In != W_in:
            raise p.error(f"the input's feature size {In} does not match the weights W (input size {W_in})")
        if T < 1 or B < 1:
            raise p.error("sequence length and batch size must be at least 1")
        seq = p.input(4)
        if seq is not None and (seq.kind != "i" or seq.shape != (B,)):
            raise p.error(f"sequence_lens must be an int tensor of shape ({B},), got {seq.shape}")
        streaming = p.stream is not None
        states, inits = [], []
        for k, (size, index) in enumerate(zip([Hout, H], (5, 6))):
            if k >= len(cls.state_names):
                states.append(None)
                inits.append([ABSENT, 0])
                continue
            want = (D, B, size)
            if streaming:
                off, shape = p.state(k)
                if tuple(shape) != want:
                    raise p.error(f"the stream's state has shape {shape}, this step needs {want}")
                from ..plan import Val
                states.append(Val("f", want, F_STATE, off))
                inits.append([KEEP, 0])
                continue
            s = p.temp(D * B * size)
            s.shape = want
            states.append(s)
            init = p.input(index)
            if init is None:
                inits.append([ABSENT, 0])
                continue
            node_shape = want if layout == 0 else (B, D, size)
            if init.kind != "f" or init.shape != node_shape:
                raise p.error(f"{'initial_h' if k == 0 else 'initial_c'} must have shape {node_shape}, "
                              f"got {init.shape}")
            if layout == 1:
                t = p.new_temp_like(init)
                t.shape = want
                p.copy(init, t, shape=want, sstrides=(size, D * size, 1))
                init = t
            inits.append(p.ref(init))
        # Y time-major (T, D, B, Hout): straight into the output for layout 0
        y_shape = (T, D, B, Hout)
        if layout == 0:
            Y = p.output(0, y_shape)
        else:
            Y = p.temp(T * D * B * Hout)
            Y.shape = y_shape
        variant = cls.variant(node, p, B)
        xw = p.temp(T * B * G * H) if variant != LSTM_FAST_MT else None
        scratch = p.temp((B + 1) * 4 * H) if variant == LSTM_FAST else None
        lens = p.temp(B, "i")
        reverse = list(DIRECTIONS[a["direction"]]) + [0] * (2 - D)
        clip = float("inf") if a["clip"] is None else float(a["clip"])
        params = [*p.ref(X), T, B, In, H, Hout, D, *p.ref(seq), *p.ref(lens), *p.ref(states[0]), *inits[0],
                  *p.ref(states[1]), *inits[1], *p.ref(Y), *p.ref(xw), *p.ref(scratch), p.f64(clip), *reverse,
                  *cls.own_params(node, p, variant)]
        p.emit(variant, f"{node.op.lower()} {_VARIANT_NAMES[variant]} T={T} B={B} I={In} H={H} D={D}", *params)
        # outputs in the node's layout
        if layout == 1 and len(node.outputs) > 0 and node.outputs[0]:
            out = p.output(0, (B, T, D, Hout))
            p.copy(Y, out, shape=(B, T, D, Hout), sstrides=(Hout, D * B * Hout, B * Hout, 1))
        for k in range(len(cls.state_names)):
            index = k + 1
            if index >= len(node.outputs) or not node.outputs[index]:
                continue
            s = states[k]
            if layout == 0:
                if streaming:
                    p.vals[node.outputs[index]] = s      # the state buffer itself; copied if returned
                else:
                    out = p.output(index, s.shape)
                    p.copy(s, out)
            else:
                size = s.shape[2]
                out = p.output(index, (B, D, size))
                p.copy(s, out, shape=(B, D, size), sstrides=(size, B * size, 1))

    @classmethod
    def activation_params(cls, node, p):
        """Per direction: the activation codes, then their alphas, then their betas (float64 bits)."""
        codes, alphas, betas = codes_of([tuple(x) for x in node.attrs["activations"]])
        n, out = len(cls.default_acts), []
        for d in range(cls.directions(node)):
            sl = slice(d * n, (d + 1) * n)
            out += [int(c) for c in codes[sl]] + [p.f64(v) for v in alphas[sl]] + [p.f64(v) for v in betas[sl]]
        return out


_VARIANT_NAMES = {LSTM_FAST: "fast", LSTM_FAST_MT: "fast, threads", LSTM_GENERIC: "generic", GRU_CODE: "",
                  RNN_CODE: ""}


class LSTM(Recurrent):
    name = "LSTM"
    n_gates = 4
    default_acts = ("Sigmoid", "Tanh", "Tanh")
    n_inputs = 9
    own_flags = ("input_forget",)
    outputs = ("Y", "Y_h", "Y_c")
    state_names = ("h", "c")

    @classmethod
    def extra_attrs(cls):
        return ("proj_size",)

    @classmethod
    def out_size(cls, a):
        return a["proj_size"] or a["hidden_size"]

    @classmethod
    def validate_extra(cls, node, a):
        if not isinstance(a["proj_size"], int) or isinstance(a["proj_size"], bool) or a["proj_size"] < 0:
            raise ModelFileError(f"node {node.name!r}: proj_size must be a non-negative integer")

    @classmethod
    def validate_tensors(cls, node, model, a, D, H, Hout):
        P = const_tensor(node, model, 7, "P")
        if P is not None and P.shape != (D, 3 * H):
            raise ModelFileError(f"node {node.name!r}: P has shape {P.shape}, expected {(D, 3 * H)}")
        Wp = const_tensor(node, model, 8, "W_proj")
        if a["proj_size"]:
            if Wp is None or Wp.shape != (D, Hout, H):
                raise ModelFileError(f"node {node.name!r}: proj_size {a['proj_size']} needs W_proj of shape "
                                     f"{(D, Hout, H)}")
        elif Wp is not None:
            raise ModelFileError(f"node {node.name!r}: W_proj given but proj_size is 0")

    @classmethod
    def fast(cls, node, dtype):
        return super().fast(node, dtype) and not node.attrs["proj_size"]

    @classmethod
    def multi_thread(cls, node, dtype, threads):
        """The threaded kernel (lstm_direction_parallel), where the runtime has it: the ahead-of-time one does not."""
        return (cls.fast(node, dtype) and threads > 1 and node.attrs["hidden_size"] >= PARALLEL_MIN_HIDDEN
                and runtime.current().parallel)

    @classmethod
    def pack(cls, node, model, dtype, threads):
        D, H, W, R, Bt = cls._tensors(node, model, dtype)
        ins = list(node.inputs) + [""] * (9 - len(node.inputs))
        WT = np.ascontiguousarray(W.transpose(0, 2, 1))                            # (D, I, 4H)    i, o, f, c
        bias = Bt[:, :4 * H] + Bt[:, 4 * H:]                                       # (D, 4H)       Wb + Rb
        packed = {
            "WT": WT,
            "RT": np.ascontiguousarray(R.transpose(0, 2, 1)),                      # (D, Hout, 4H) i, o, f, c
            "bias": bias,
            "peep": (model.tensors[ins[7]].astype(dtype) if ins[7] else np.zeros((1, 3 * H), dtype)),  # (D|1, 3H)
        }
        if cls.multi_thread(node, dtype, threads):
            # per-thread slices, each thread's weights contiguous (DeepCPU layout); used at batch < BLAS_MIN_BATCH
            packed["WTp"] = pack_parts(WT, threads)                                # (D, parts, I, 4*chunk)
            packed["RTp"] = pack_parts(packed["RT"], threads)                      # (D, parts, H, 4*chunk)
            packed["biasp"] = pack_parts(bias[:, None, :], threads)                # (D, parts, 1, 4*chunk)
        if not cls.fast(node, dtype) and ins[8]:
            packed["projT"] = np.ascontiguousarray(model.tensors[ins[8]].astype(dtype).transpose(0, 2, 1))
        return packed

    @classmethod
    def variant(cls, node, p, B):
        if not cls.fast(node, p.dtype):
            return LSTM_GENERIC
        if cls.multi_thread(node, p.dtype, p.threads) and B < BLAS_MIN_BATCH:
            return LSTM_FAST_MT
        return LSTM_FAST

    @classmethod
    def own_params(cls, node, p, variant):
        ins = list(node.inputs) + [""] * (9 - len(node.inputs))
        peep_off, peep_shape = p.weight("peep")
        params = [p.weight("WT")[0], p.weight("RT")[0], p.weight("bias")[0], peep_off, int(bool(ins[7])),
                  node.attrs["input_forget"], peep_shape[0]]
        if variant == LSTM_FAST_MT:
            wtp_off, wtp_shape = p.weight("WTp")
            params += [wtp_off, p.weight("RTp")[0], p.weight("biasp")[0], wtp_shape[1], wtp_shape[3] // 4]
        elif variant == LSTM_GENERIC:
            params += [p.weight("projT")[0] if ins[8] else 0, int(bool(ins[8]))] + cls.activation_params(node, p)
        return params


class GRU(Recurrent):
    name = "GRU"
    n_gates = 3
    default_acts = ("Sigmoid", "Tanh")
    own_flags = ("linear_before_reset",)

    @classmethod
    def pack(cls, node, model, dtype, threads):
        D, H, W, R, Bt = cls._tensors(node, model, dtype)
        RT = R.transpose(0, 2, 1)                                                  # (D, H, 3H) z, r, h
        return {
            "WT": np.ascontiguousarray(W.transpose(0, 2, 1)),                      # (D, I, 3H)
            "RTzr": np.ascontiguousarray(RT[:, :, :2 * H]),                        # (D, H, 2H)
            "RTh": np.ascontiguousarray(RT[:, :, 2 * H:]),                         # (D, H, H)
            "bias": np.concatenate([Bt[:, :2 * H] + Bt[:, 3 * H:5 * H],            # (D, 4H)
                                    Bt[:, 2 * H:3 * H], Bt[:, 5 * H:]], axis=1),
        }

    @classmethod
    def variant(cls, node, p, B):
        return GRU_CODE

    @classmethod
    def own_params(cls, node, p, variant):
        return [p.weight("WT")[0], p.weight("RTzr")[0], p.weight("RTh")[0], p.weight("bias")[0],
                node.attrs["linear_before_reset"], int(cls.fast(node, p.dtype))] + cls.activation_params(node, p)


class RNN(Recurrent):
    name = "RNN"
    n_gates = 1
    default_acts = ("Tanh",)

    @classmethod
    def pack(cls, node, model, dtype, threads):
        D, H, W, R, Bt = cls._tensors(node, model, dtype)
        return {
            "WT": np.ascontiguousarray(W.transpose(0, 2, 1)),                      # (D, I, H)
            "RT": np.ascontiguousarray(R.transpose(0, 2, 1)),                      # (D, H, H)
            "bias": Bt[:, :H] + Bt[:, H:],                                         # (D, H)
        }

    @classmethod
    def variant(cls, node, p, B):
        return RNN_CODE

    @classmethod
    def own_params(cls, node, p, variant):
        return [p.weight("WT")[0], p.weight("RT")[0], p.weight("bias")[0],
                int(cls.fast(node, p.dtype))] + cls.activation_params(node, p)


RECURRENT_OPS = [LSTM, GRU, RNN]
