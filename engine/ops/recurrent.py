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
          several threads: WTp, RTp (D, parts, ., 4*chunk), biasp (D, parts, 1, 4*chunk)  (lstm_fast.pack_parts)
    GRU   WT (D, I, 3H), RTzr (D, H, 2H) z, r, RTh (D, H, H), bias (D, 4H) = [Wbz+Rbz, Wbr+Rbr, Wbh, Rbh]
    RNN   WT (D, I, H), RT (D, H, H), bias (D, H) = Wb + Rb
"""
import numpy as np
from numba import njit

from ..config import JIT_OPTIONS
from ..errors import ModelFileError, UnsupportedModelError
from .activations import ACTIVATIONS, codes_of
from .base import Op, const_tensor, is_int, is_number, require_attrs
from .gru_rnn import gru_direction, rnn_direction
from .lstm_fast import PARALLEL_MIN_HIDDEN, lstm_direction_fast, lstm_direction_parallel, pack_parts
from .lstm_kernels import lstm_direction_generic
from .numeric import BLAS_MIN_BATCH, input_projection
from .program import ABSENT, ERR_SEQ_LENS, KEEP, OK, RECURRENT_BASE, F_STATE, fparam, fview, iview

DIRECTIONS = {"forward": (0,), "reverse": (1,), "bidirectional": (0, 1)}
LSTM_FAST, LSTM_FAST_MT, LSTM_GENERIC, GRU_CODE, RNN_CODE = range(RECURRENT_BASE, RECURRENT_BASE + 5)

# the params every recurrent instruction starts with (offsets after the [opcode, length, node] header)
P_X, P_DIMS, P_SEQ, P_LENS, P_H, P_H0, P_C, P_C0, P_Y, P_XW, P_SCRATCH, P_CLIP, P_REV, P_OWN = (
    0, 2, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 27, 29)


# ---------------------------------------------------------------------- run time
@njit(**JIT_OPTIONS)
def _lengths(lens, I, prog, at, T, B):
    """lens (B,) <- sequence_lens, checked, or T for every entry when there are none."""
    if prog[at] == ABSENT:
        for b in range(B):
            lens[b] = T
        return OK
    seq = iview(I, prog, at, B)
    for b in range(B):
        if seq[b] < 0 or seq[b] > T:
            return ERR_SEQ_LENS
        lens[b] = seq[b]
    return OK


@njit(**JIT_OPTIONS)
def _init_state(s, F, prog, at, lens):
    """s (D, B, K) <- the initial state (zeros when absent; left alone in a stream, KEEP). A batch entry with
    sequence length 0 ends with a zero state (onnxruntime's semantics); the kernels leave it alone."""
    D, B, K = s.shape
    space = prog[at]
    if space == ABSENT:
        s[:, :, :] = 0
    elif space != KEEP:
        src = fview(F, prog, at, D * B * K)
        s1 = s.reshape(-1)
        for i in range(D * B * K):
            s1[i] = src[i]
    for b in range(B):
        if lens[b] == 0:
            s[:, b, :] = 0


@njit(**JIT_OPTIONS)
def run_recurrent(code, prog, pc, F, I):
    p = pc + 3
    T, B, In, H, Hout, D = (prog[p + P_DIMS], prog[p + P_DIMS + 1], prog[p + P_DIMS + 2], prog[p + P_DIMS + 3],
                            prog[p + P_DIMS + 4], prog[p + P_DIMS + 5])
    X2 = fview(F, prog, p + P_X, T * B * In).reshape((T * B, In))
    lens = iview(I, prog, p + P_LENS, B)
    status = _lengths(lens, I, prog, p + P_SEQ, T, B)
    if status != OK:
        return status
    h = fview(F, prog, p + P_H, D * B * Hout).reshape((D, B, Hout))
    _init_state(h, F, prog, p + P_H0, lens)
    Y = fview(F, prog, p + P_Y, T * D * B * Hout).reshape((T, D, B, Hout))
    if prog[p + P_SEQ] != ABSENT:
        Y[:, :, :, :] = 0            # rows past a sequence's end are zeros; the kernels skip them
    fconst = F[0]
    one = np.empty(1, dtype=fconst.dtype)
    one[0] = fparam(prog, p + P_CLIP)
    clip = one[0]                    # +inf: no clip; typed as the compute dtype
    q = p + P_OWN
    if code == LSTM_FAST or code == LSTM_FAST_MT or code == LSTM_GENERIC:
        c = fview(F, prog, p + P_C, D * B * H).reshape((D, B, H))
        _init_state(c, F, prog, p + P_C0, lens)
        o_wt, o_rt, o_bias, o_peep, use_peep, input_forget = (prog[q], prog[q + 1], prog[q + 2], prog[q + 3],
                                                              prog[q + 4] != 0, prog[q + 5] != 0)
        Dp = prog[q + 6]             # peepholes stored per direction, or one zero row
        WT = fconst[o_wt:o_wt + D * In * 4 * H].reshape((D, In, 4 * H))
        bias = fconst[o_bias:o_bias + D * 4 * H].reshape((D, 4 * H))
        peep = fconst[o_peep:o_peep + Dp * 3 * H].reshape((Dp, 3 * H))
        if code == LSTM_FAST_MT:
            o_wtp, o_rtp, o_bp, parts, chunk = prog[q + 7], prog[q + 8], prog[q + 9], prog[q + 10], prog[q + 11]
            WTp = fconst[o_wtp:o_wtp + D * parts * In * 4 * chunk].reshape((D, parts, In, 4 * chunk))
            RTp = fconst[o_rtp:o_rtp + D * parts * H * 4 * chunk].reshape((D, parts, H, 4 * chunk))
            biasp = fconst[o_bp:o_bp + D * parts * 4 * chunk].reshape((D, parts, 1, 4 * chunk))
            for d in range(D):
                lstm_direction_parallel(Y, d, X2, B, WTp[d], RTp[d], biasp[d], peep[d % Dp], use_peep, lens, h[d],
                                        c[d], prog[p + P_REV + d] == 1, clip, input_forget)
            return OK
        xw = fview(F, prog, p + P_XW, T * B * 4 * H).reshape((T * B, 4 * H))
        RT = fconst[o_rt:o_rt + D * Hout * 4 * H].reshape((D, Hout, 4 * H))
        if code == LSTM_FAST:
            scratch = fview(F, prog, p + P_SCRATCH, (B + 1) * 4 * H)
            gates = scratch[:4 * H]
            rec = scratch[4 * H:].reshape((B, 4 * H))
            for d in range(D):
                input_projection(X2, WT[d], xw)
                lstm_direction_fast(Y, d, xw, B, RT[d], bias[d], peep[d % Dp], use_peep, lens, h[d], c[d],
                                    prog[p + P_REV + d] == 1, clip, input_forget, gates, rec)
            return OK
        o_proj, use_proj = prog[q + 7], prog[q + 8] != 0
        projT = fconst[o_proj:o_proj + D * H * Hout].reshape((D, H, Hout)) if use_proj else \
            fconst[0:0].reshape((1, 0, 0))
        for d in range(D):
            acts = q + 9 + 9 * d         # codes f, g, h; alphas; betas (float64 bits)
            np.dot(X2, WT[d], xw)
            lstm_direction_generic(Y, h, c, d, xw, B, RT[d], bias[d], peep[d % Dp], use_peep,
                                   projT[d % projT.shape[0]], use_proj, lens, h[d], c[d], prog[p + P_REV + d] == 1,
                                   prog[acts:acts + 3], prog[acts + 3:acts + 6].view(np.float64),
                                   prog[acts + 6:acts + 9].view(np.float64), clip, input_forget)
        return OK
    if code == GRU_CODE:
        o_wt, o_rz, o_rh, o_bias, lbr, fast = (prog[q], prog[q + 1], prog[q + 2], prog[q + 3], prog[q + 4] != 0,
                                               prog[q + 5] != 0)
        WT = fconst[o_wt:o_wt + D * In * 3 * H].reshape((D, In, 3 * H))
        RTzr = fconst[o_rz:o_rz + D * H * 2 * H].reshape((D, H, 2 * H))
        RTh = fconst[o_rh:o_rh + D * H * H].reshape((D, H, H))
        bias = fconst[o_bias:o_bias + D * 4 * H].reshape((D, 4 * H))
        xw = fview(F, prog, p + P_XW, T * B * 3 * H).reshape((T * B, 3 * H))
        for d in range(D):
            acts = q + 6 + 6 * d         # codes f, g; alphas; betas
            input_projection(X2, WT[d], xw)
            gru_direction(Y, d, xw, B, RTzr[d], RTh[d], bias[d], lens, h[d], prog[p + P_REV + d] == 1,
                          prog[acts:acts + 2], prog[acts + 2:acts + 4].view(np.float64),
                          prog[acts + 4:acts + 6].view(np.float64), clip, lbr, fast)
        return OK
    # RNN
    o_wt, o_rt, o_bias, fast = prog[q], prog[q + 1], prog[q + 2], prog[q + 3] != 0
    WT = fconst[o_wt:o_wt + D * In * H].reshape((D, In, H))
    RT = fconst[o_rt:o_rt + D * H * H].reshape((D, H, H))
    bias = fconst[o_bias:o_bias + D * H].reshape((D, H))
    xw = fview(F, prog, p + P_XW, T * B * H).reshape((T * B, H))
    for d in range(D):
        acts = q + 4 + 3 * d
        input_projection(X2, WT[d], xw)
        rnn_direction(Y, d, xw, B, RT[d], bias[d], lens, h[d], prog[p + P_REV + d] == 1, prog[acts],
                      fparam(prog, acts + 1), fparam(prog, acts + 2), clip, fast)
    return OK


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
        if not isinstance(a["direction"], str) or a["direction"] not in DIRECTIONS:
            raise UnsupportedModelError(f"node {node.name!r}: direction {a['direction']!r} is not one of "
                                        f"forward, reverse, bidirectional")
        if not is_int(a["layout"], 0, 1):
            raise UnsupportedModelError(f"node {node.name!r}: layout must be 0 or 1, got {a['layout']!r}")
        D = len(DIRECTIONS[a["direction"]])
        acts = a["activations"]
        if not isinstance(acts, list) or len(acts) != len(cls.default_acts) * D:
            raise ModelFileError(f"node {node.name!r}: expected {len(cls.default_acts) * D} activations, got {acts!r}")
        for act in acts:
            if (not isinstance(act, list) or len(act) != 3 or not isinstance(act[0], str)
                    or act[0].lower() not in ACTIVATIONS
                    or not all(is_number(v) for v in act[1:])):
                raise UnsupportedModelError(f"node {node.name!r}: unsupported activation {act!r}")
        clip = a["clip"]
        if clip is not None and not (is_number(clip) and clip > 0):
            raise ModelFileError(f"node {node.name!r}: clip must be a positive number or null, got {clip!r}")
        for key in cls.own_flags:
            if not is_int(a[key], 0, 1):
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
        """In a stream the initial state comes from the stream's state, not from initial_h / initial_c, and the
        length of the sequence is the number of steps fed: sequence_lens is not read either."""
        return [name for i, name in enumerate(node.inputs) if name and not (streaming and i in (4, 5, 6))]

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
        streaming = p.stream is not None
        seq = None if streaming else p.input(4)
        if seq is not None and (seq.kind != "i" or seq.shape != (B,)):
            raise p.error(f"sequence_lens must be an int tensor of shape ({B},), got {seq.shape}")
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
        return cls.fast(node, dtype) and threads > 1 and node.attrs["hidden_size"] >= PARALLEL_MIN_HIDDEN

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
