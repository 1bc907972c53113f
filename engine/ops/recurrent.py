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

W, R, B, P and W_proj are constant tensors of the model, or graph inputs fed at every call (ONNX graphs whose
weights are inputs, as onnxruntime runs them): such a node is packed on the call, into the same layout, and its
instruction reads its packed weights from the call's buffer (F_CALL) instead of the model's (F_CONST); see
engine/call_weights.py.

The planner lays every recurrent node out the same way for the kernels (``run_recurrent``): X time-major (T, B, I),
the state (D, B, Hout) updated in place (in a stream, the stream's state buffer itself), Y (T, D, B, Hout). Layout 1
(batch-first) is two strided copies around that. Packed weights per direction (``pack``) are named:

    LSTM  WT (D, parts, 4*chunk // 64, I, 64), RT (D, parts, 4*chunk // 64, Hout, 64) in column groups (the
          fast kernels; the generic one reads (D, 1, I, 4H) and (D, 1, Hout, 4H) plainly), bias (D, parts, 1,
          4*chunk) = Wb + Rb, peep (D|1, 3H)  [+ projT (D, H, Hout)]; part p holds hidden units [p*chunk,
          (p+1)*chunk) of each gate block i, o, f, c (``pack_parts``): one part unless the threaded kernel runs,
          then one per thread, and every LSTM kernel reads that one layout (no second copy of the weights)
    GRU   WT (D, I, 3H), RTzr (D, H, 2H) z, r, RTh (D, H, H), bias (D, 4H) = [Wbz+Rbz, Wbr+Rbr, Wbh, Rbh]; or,
          float32 with the default activations and linear_before_reset (what PyTorch exports), as the LSTM's:
          WT (D, parts, width // 64, I, 64), RT (D, parts, width // 64, H, 64) in column groups, blocks z, r, h of
          chunk units (width = 3*chunk rounded up to 64), bias (D, parts, 1, 4*chunk); one part per thread for
          the threaded GRU (GRU_FAST_MT, from GRU_PARALLEL_MIN_HIDDEN), else one (GRU_FAST)
    RNN   WT (D, I, H), RT (D, H, H), bias (D, H) = Wb + Rb; or, float32 with tanh (RNN_FAST), in column groups:
          WT (D, G // 64, I, 64), RT (D, G // 64, H, 64), bias (D, G), G = H rounded up to 64 (zero columns past H)

Reduced-precision weights (W and R stored as bfloat16 or int8, engine/quant.py) run in float32 on kernels that read
them as stored (LSTM_REDUCED, GRU_REDUCED, RNN_REDUCED; reduced_kernels.py), single-threaded; WT and every R above
are then uint16 (bfloat16 bits) or int8 in column groups (``group_pack``), kept as raw bytes in the float32 weight
buffer, for int8 each with its scale (D, G) and int32 zero-point correction (D, Gp). Where no such kernel applies
(float64 compute, an LSTM with custom activations or a projection) the weights are decoded to floats when packed and
the float kernels run.

The op classes plan and pack without Numba; their run function is in recurrent_kernels.py.
"""
import numpy as np

from .. import quant, recurrent_spec, runtime
from ..errors import ModelFileError
from ..recurrent_spec import DIRECTIONS
from .activations import codes_of
from .base import Op, release_pages
from .layers import matmul_parts
from .program import (ABSENT, DIRECTION_THREADS_MIN_MACS, F_STATE, FUSE_MAX_BYTES, FUSE_MIN_ROWS, FUSE_ROW_BYTES,
                      GRU_PARALLEL_MIN_HIDDEN, KEEP, PARALLEL_ANY_STEPS_HIDDEN, PARALLEL_MIN_HIDDEN, PARALLEL_MIN_STEPS,
                      PARALLEL_STEP_HIDDEN, RECURRENT_BASE, SPLIT_MAX_UNITS, SPLIT_MIN_ROWS,
                      UNITS_FUSE_MIN_ROWS, UNITS_FUSE_ROW_BYTES)

LSTM_FAST, LSTM_FAST_MT, LSTM_GENERIC, GRU_CODE, RNN_CODE = range(RECURRENT_BASE, RECURRENT_BASE + 5)
LSTM_REDUCED, GRU_REDUCED, RNN_REDUCED = range(RECURRENT_BASE + 5, RECURRENT_BASE + 8)   # reduced_kernels.py
GRU_FAST_MT = RECURRENT_BASE + 8    # the threaded GRU (linear_before_reset), on lstm_fast.py's threaded kernel
GRU_FAST = RECURRENT_BASE + 9       # the one-part GRU (linear_before_reset): that kernel's tasks in turn, one thread
RNN_FAST = RECURRENT_BASE + 10      # the float32 RNN with tanh on the column groups (gru_rnn.rnn_direction_grouped)
BF16, INT8 = 1, 2       # the stored encoding, first own param of a reduced instruction
_ENCODING_CODES = {"bfloat16": BF16, "int8": INT8}

# the params every recurrent instruction starts with (offsets after the [opcode, length, node] header); P_WEIGHTS
# is the space the op's packed weights are read from (F_CONST, or F_CALL when they are inputs of the call);
# P_PROJ_PARTS the parts the hoisted input projection's rows split into on Numba's threads (Recurrent.proj_parts)
P_X, P_DIMS, P_SEQ, P_LENS, P_H, P_H0, P_C, P_C0, P_Y, P_XW, P_SCRATCH, P_CLIP, P_REV, P_WEIGHTS, P_PROJ_PARTS, \
    P_OWN = 0, 2, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 27, 29, 30, 31


# ---------------------------------------------------------------------- packing
def part_chunk(H, nparts, grouped):
    """Hidden units per part: H split over nparts, rounded up to 16 for the grouped layout (the gate blocks of a
    part start on whole 16-column blocks of the register tiles)."""
    chunk = -(-H // nparts)
    return -(-chunk // 16) * 16 if grouped else chunk


def part_width(chunk, n_gates, grouped):
    """Columns of one part: its n_gates blocks of chunk, rounded up to whole column groups of 64 when grouped
    (four LSTM blocks of 16-multiples need none; three GRU blocks may)."""
    return -(-n_gates * chunk // 64) * 64 if grouped else n_gates * chunk


def pack_parts(RT, nparts, grouped=False, n_gates=4, chunk=None):
    """RT (D, rows, n_gates*H) -> (D, nparts, rows, n_gates*chunk): part p's columns (its hidden units in each of the
    gate blocks, e.g. i, o, f, c), contiguous, so that each thread runs the same vectorised product on its own
    slice. Used for RT, WT (rows = input size) and the bias (rows = 1). ``grouped``: each part in column groups
    instead, (D, nparts, width // 64, rows, 64) (``group_pack``, ``part_width``), as the register tiles read them
    (engine/ops/tiles.py). ``chunk`` overrides ``part_chunk`` (a GRU's bias, packed plainly, beside its grouped
    weights)."""
    return _parts(RT.transpose(0, 2, 1), RT.dtype, nparts, grouped=grouped, n_gates=n_gates, chunk=chunk)


def _parts(t, dtype, nparts, model=None, grouped=False, n_gates=4, chunk=None):
    """t (D, n_gates*H, rows), as a model stores W and R -> the parts of ``pack_parts``, transposed and split in one
    pass, a direction at a time; the pages of t's file mapping are let go once read (``model.release_pages``), so
    that loading never holds the file's copy of a weight beside its packed one. Columns past the last unit of a part
    (uneven parts, the grouped layout's rounding) are zeros."""
    D, G, rows = t.shape
    H = G // n_gates
    chunk = part_chunk(H, nparts, grouped) if chunk is None else chunk
    width = part_width(chunk, n_gates, grouped)
    shape = (D, nparts, width // 64, rows, 64) if grouped else (D, nparts, rows, width)
    exact = nparts * chunk == H and width == n_gates * chunk
    out = np.empty(shape, dtype=dtype) if exact else np.zeros(shape, dtype=dtype)
    part = np.zeros((rows, width), dtype=dtype) if grouped else None
    for d in range(D):
        td = t[d]
        for p in range(nparts):
            j0, j1 = min(H, p * chunk), min(H, (p + 1) * chunk)   # the last parts may be empty (more parts than fit)
            dst = part if grouped else out[d, p]
            for q in range(n_gates):
                dst[:, q * chunk:q * chunk + (j1 - j0)] = td[q * H + j0:q * H + j1].T
            if grouped:
                out[d, p] = group_pack(part, 1).reshape(width // 64, rows, 64)
                part[:] = 0
        release_pages(model, td)
    return out


def group_pack(w, per):
    """(K, G) int8 (per = 4), uint16 bfloat16 bits (per = 2) or float (per = 1) -> column groups, flat: K
    zero-padded to a multiple of ``per``, G to 64; element [jg, kk, b, c, e] = w[per * kk + e, 64 jg + 16 b + c], so
    that a group (64 columns) streams in order over all of K and one 64-byte load holds ``per`` consecutive rows of
    16 columns, as vpdpbusd (int8) or a shift and a mask (bfloat16) read them (engine/ops/tiles.py)."""
    K, G = w.shape
    z = np.zeros((-(-K // per) * per, -(-G // 64) * 64), w.dtype)
    z[:K, :G] = w
    return z.reshape(z.shape[0] // per, per, z.shape[1] // 64, 4, 16).transpose(2, 0, 3, 4, 1).reshape(-1)


def _reduced_recurrent(model, name, key, rows):
    """The rows ``rows`` (a slice of G) of W or R (D, G, K) as stored -> (key, (D, .) the column groups of each
    direction's transpose (K, g), group_pack); int8 adds (key + "_scale", (D, g)) and (key + "_neg", int32 (D, gp):
    -128 * the column sums, gp = g rounded up to 64)."""
    t = model.tensors[name][:, rows, :]
    int8 = quant.encoding_of(model, name) == "int8"
    yield key, quant.stored_bytes(np.stack([group_pack(t[d].T, 4 if int8 else 2) for d in range(t.shape[0])]))
    if int8:
        yield key + "_scale", np.ascontiguousarray(quant.scales_of(model, name)[:, rows], np.float32)
        neg = np.zeros((t.shape[0], -(-t.shape[1] // 64) * 64), np.int32)
        neg[:, :t.shape[1]] = -128 * t.astype(np.int32).sum(axis=2)
        yield key + "_neg", quant.stored_bytes(neg)


# ---------------------------------------------------------------------- the ops
def _transposed(t, dtype):
    """(D, rows, cols) -> (D, cols, rows) in the compute dtype, contiguous, converting one direction at a time."""
    out = np.empty((t.shape[0], t.shape[2], t.shape[1]), dtype)
    for d in range(t.shape[0]):
        out[d] = t[d].T
    return out


class Recurrent(Op):
    """What LSTM, GRU and RNN share: attribute checks, weight checks, the plan (layouts, state, outputs)."""
    recurrent = True
    packed_inputs = (1, 2, 3, 7, 8)      # W, R, B, P, W_proj: read only through pack()
    n_inputs = 6
    outputs = ("Y", "Y_h")
    state_names = ("h",)

    @classmethod
    def spec(cls):
        """The op's attributes, gates and default activations (engine/recurrent_spec.py)."""
        return recurrent_spec.SPECS[cls.name]

    # ------------------------------------------------------------------ checks
    @classmethod
    def directions(cls, node):
        return len(DIRECTIONS[node.attrs["direction"]])

    @classmethod
    def out_size(cls, a):
        return a["hidden_size"]

    @classmethod
    def weight_specs(cls, node, input_size=None):
        """{input index: (name, expected shape)} of the node's weights; the input size is None until X is known."""
        a = node.attrs
        D, H, Hout, G = cls.directions(node), a["hidden_size"], cls.out_size(a), cls.spec().n_gates
        return {1: ("W", (D, G * H, input_size)), 2: ("R", (D, G * H, Hout)), 3: ("B", (D, 2 * G * H))}

    @classmethod
    def validate(cls, node, model):
        a = node.attrs
        recurrent_spec.check(node.op, a, where=f"node {node.name!r}")
        D = len(DIRECTIONS[a["direction"]])
        H = a["hidden_size"]
        if len(node.inputs) > cls.n_inputs:
            raise ModelFileError(f"node {node.name!r}: too many inputs ({len(node.inputs)})")
        if not node.inputs or not node.inputs[0]:
            raise ModelFileError(f"node {node.name!r}: input X is required")
        Hout = cls.out_size(a)
        cls.validate_tensors(node, model, a, D, H, Hout)
        for index, (what, want) in cls.weight_specs(node).items():
            shape = _weight_shape(node, model, index, what, required=index in (1, 2))
            if shape is None:
                continue
            if len(shape) != len(want) or any(isinstance(g, int) and w is not None and g != w
                                              for g, w in zip(shape, want)) or \
                    (isinstance(shape[-1], int) and shape[-1] < 1):
                expected = ", ".join("input_size" if w is None else str(w) for w in want)
                raise ModelFileError(f"node {node.name!r}: {what} has shape {shape}, expected ({expected})")
        if len(node.outputs) > len(cls.outputs) or not any(node.outputs):
            raise ModelFileError(f"node {node.name!r}: needs one to {len(cls.outputs)} outputs "
                                 f"({', '.join(cls.outputs)})")

    @classmethod
    def validate_tensors(cls, node, model, a, D, H, Hout):
        pass

    @classmethod
    def reads(cls, node, streaming):
        """In a stream the initial state comes from the stream's state, not from initial_h / initial_c, and the
        length of the sequence is the number of steps fed: sequence_lens is not read either. The weights are read
        packed only (constants at load, graph inputs by the Session on the call), never by the instruction."""
        return [name for i, name in enumerate(node.inputs)
                if name and not (streaming and i in (4, 5, 6)) and i not in cls.packed_inputs]

    # ------------------------------------------------------------------ packing
    @classmethod
    def _tensors(cls, node, model, dtype):
        """(D, H, W, R, B) as arrays of the compute dtype (decoded if stored reduced); B zeros when absent. ``pack``
        reads ``model.tensors`` only: for weights fed at run time it is given the call's arrays there
        (engine/call_weights.py)."""
        a = node.attrs
        D, H = cls.directions(node), a["hidden_size"]
        ins = list(node.inputs) + [""] * (cls.n_inputs - len(node.inputs))
        W = quant.decoded(model, ins[1], dtype)
        R = quant.decoded(model, ins[2], dtype)
        G = cls.spec().n_gates
        Bt = np.asarray(model.tensors[ins[3]], dtype) if ins[3] else np.zeros((D, 2 * G * H), dtype)
        return D, H, W, R, Bt

    @classmethod
    def gate_width(cls, node, p):
        """Columns of the projected input per row (the xw buffer): G * H."""
        return cls.spec().n_gates * node.attrs["hidden_size"]

    @classmethod
    def default_activations(cls, node):
        D = cls.directions(node)
        return [act[0] for act in node.attrs["activations"]] == list(cls.spec().default_activations) * D

    @classmethod
    def fast(cls, node, dtype):
        """float32 with the default activations: the vectorised sigmoid/tanh kernels."""
        return np.dtype(dtype) == np.float32 and cls.default_activations(node)

    @classmethod
    def reduced(cls, node, model, dtype):
        """The encoding ("bfloat16" or "int8") when the node runs on the reduced-weight kernel: W and R stored in
        the same reduced encoding and float32 compute; else None (weights decoded at packing)."""
        encs = [quant.encoding_of(model, name) for name in node.inputs[1:3]]
        if encs[0] == encs[1] and encs[0] in quant.REDUCED and np.dtype(dtype) == np.float32:
            return encs[0]
        return None

    @classmethod
    def reduced_params(cls, node, p):
        """The first own params of a reduced instruction: encoding, WT, its int8 scale and neg (0 for bfloat16)."""
        enc = cls.reduced(node, p.model, p.dtype)
        return [_ENCODING_CODES[enc], p.weight("WT")[0]] + (
            [p.weight("WT_scale")[0], p.weight("WT_neg")[0]] if enc == "int8" else [0, 0])

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
    def own_params(cls, node, p, variant, B, fused, on_threads):
        """The op's own params after the common ones (see run_recurrent); B is the batch, ``fused`` whether
        the kernel projects the input step by step and ``on_threads`` whether the two directions run at once
        (directions_on_threads), all decided once by ``plan``."""
        raise NotImplementedError

    # the variants whose two directions may run at once, one thread each (each op's one-thread kernel)
    at_once = ()

    @classmethod
    def directions_on_threads(cls, node, p, variant, T, B, In):
        """Whether the two directions run at once, one thread each (lstm_directions_parallel, gru_rnn's
        directions_parallel): a bidirectional layer on a one-thread kernel (``at_once``), with two threads or more,
        where the runtime has them, and at least DIRECTION_THREADS_MIN_MACS of work a direction."""
        H = node.attrs["hidden_size"]
        return (variant in cls.at_once and cls.directions(node) == 2 and p.threads >= 2 and runtime.current().parallel
                and T * B * cls.spec().n_gates * H * (In + H) >= DIRECTION_THREADS_MIN_MACS)

    @classmethod
    def variant(cls, node, p, T, B):
        raise NotImplementedError

    @classmethod
    def plan(cls, node, p):
        a = node.attrs
        D, H, Hout, layout = cls.directions(node), a["hidden_size"], cls.out_size(a), a["layout"]
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
        streaming = p.stream is not None
        if p.call.takes(node):
            if streaming:
                raise p.unsupported("its weights are inputs of the call, and a stream takes only its stream input: "
                                    "use Session.run")
            cls.check_call_weights(node, p, In)
        W_in = _shape_now(node, p, 1)[2]
        if In != W_in:
            raise p.error(f"the input's feature size {In} does not match the weights W (input size {W_in})")
        if T < 1 or B < 1:
            raise p.error("sequence length and batch size must be at least 1")
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
            if layout == 0 and p.needed(k + 1):
                s = p.output(k + 1, want)          # the kernel's working state ends as the output: no copy
            else:
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
        variant = cls.variant(node, p, T, B)
        on_threads = cls.directions_on_threads(node, p, variant, T, B, In)
        proj_parts = cls.proj_parts(node, p, variant, on_threads, T * B, In)
        if variant in (LSTM_FAST_MT, GRU_FAST_MT) or on_threads or proj_parts:
            # the kernel runs on Numba's threads: the plan's other products keep to one thread, since an OpenBLAS
            # pool spinning after its product takes a core from them (bench.crnn's medium CRNN, 2 threads: 32.0 ms
            # a call with its linear layer on OpenBLAS's two threads, against 17.5 ms for its instructions timed
            # one by one)
            p.blas_threads = 1
        reverse = list(DIRECTIONS[a["direction"]]) + [0] * (2 - D)
        width = cls.gate_width(node, p)  # G * H, or for a packed LSTM parts * 4 * chunk (padding when uneven)
        # no hoisted projection where the kernel projects step by step; it still may with sequence_lens and a
        # reverse direction (its entries at different steps)
        fused = cls.fused(node, p, variant, In, B)
        hoisted = not fused or (seq is not None and any(reverse))
        per_direction = 2 if on_threads else 1     # directions at once: buffers of their own
        xw = p.temp(per_direction * T * B * width if hoisted else 1)
        scratch = p.temp(per_direction * (B + 1) * width) if variant == LSTM_FAST else None
        lens = p.temp(B + 1, "i")          # the lengths, and the parity of a single step's calls (run_recurrent)
        clip = float("inf") if a["clip"] is None else float(a["clip"])
        params = [*p.ref(X), T, B, In, H, Hout, D, *p.ref(seq), *p.ref(lens), *p.ref(states[0]), *inits[0],
                  *p.ref(states[1]), *inits[1], *p.ref(Y), *p.ref(xw), *p.ref(scratch), p.f64(clip), *reverse,
                  p.weight_space(), max(proj_parts, 1), *cls.own_params(node, p, variant, B, fused, on_threads)]
        fed = ", weights packed on the call" if p.call.takes(node) else ""
        kernel = _VARIANT_NAMES[variant]
        if variant == LSTM_FAST_MT:       # the kernel splits the batch or the hidden units (recurrent_kernels.py)
            kernel += " by batch" if cls.by_batch(node, p, B) else " by unit"
        name = ", ".join(w for w in (kernel, "fused projection" if fused else "",
                                     "directions on 2 threads" if on_threads else "",
                                     f"input projection on {proj_parts} threads" if proj_parts > 1 else "") if w)
        p.emit(variant, f"{node.op.lower()} {name + ' ' if name else ''}T={T} B={B} I={In} H={H} D={D}{fed}",
               *params)
        # outputs in the node's layout
        if layout == 1 and p.needed(0):
            out = p.output(0, (B, T, D, Hout))
            p.copy(Y, out, shape=(B, T, D, Hout), sstrides=(Hout, D * B * Hout, B * Hout, 1))
        for k in range(len(cls.state_names)):
            index = k + 1
            if not p.needed(index):
                continue
            s = states[k]
            if layout == 0:
                if streaming:
                    p.vals[node.outputs[index]] = s      # the state buffer itself; copied if returned
                # else: the kernel worked in the output itself
            else:
                size = s.shape[2]
                out = p.output(index, (B, D, size))
                p.copy(s, out, shape=(B, D, size), sstrides=(size, B * size, 1))

    @classmethod
    def proj_parts(cls, node, p, variant, on_threads, rows, In):
        """For a kernel whose recurrence runs on one thread and whose input projection is one product over all
        steps (LSTM_GENERIC, GRU_CODE, GRU_FAST, RNN_CODE, RNN_FAST, a direction at a time) in a float32 plan of
        several threads: the parts that product's rows split into on Numba's threads (layers.matmul_parts: 1 when
        too small to gain; GRU_FAST's and RNN_FAST's on the column groups, numeric.grouped_rows_parallel),
        the plan's BLAS then kept to one thread; 0 for the other kernels and plans. Measured on the 2-core Zen 5, the
        register tiles on two threads against OpenBLAS (SciPy's 0.3.30, SkylakeX) on two, in one process: (100, 128) @
        (128, 384) 51.8 against 62.9 us, (100, 256) @ (256, 256) 63.4 against 86.4, (100, 512) @ (512, 1536) 717
        against 906, (3200, 256) @ (256, 768) even (6.1 ms); and no OpenBLAS pool left spinning on the other core
        while the recurrence runs (a GRU at T=100 H=128 in the bench's process: 327 us on two threads against 292
        on one)."""
        if p.threads < 2 or on_threads or variant not in (LSTM_GENERIC, GRU_CODE, GRU_FAST, RNN_CODE, RNN_FAST) or \
                np.dtype(p.dtype) != np.float32 or not runtime.current().parallel:
            return 0
        return matmul_parts(p.threads, rows, In, cls.spec().n_gates * node.attrs["hidden_size"])

    @classmethod
    def fused(cls, node, p, variant, In, B):
        """Whether the kernel projects the input step by step (only the fast LSTM's)."""
        return False

    @classmethod
    def check_call_weights(cls, node, p, In):
        """The shapes of the weights this call feeds, against the node's (the Session checked their declared
        dimensions; symbolic ones are checked here)."""
        for index, (what, want) in cls.weight_specs(node, In).items():
            name = node.inputs[index] if index < len(node.inputs) else ""
            if name and name not in p.model.tensors:
                got = tuple(p.call.shapes[name])
                if got != want:
                    raise p.error(f"input {name!r} ({what}) has shape {got}, expected {want}")

    @classmethod
    def activation_params(cls, node, p):
        """Per direction: the activation codes, then their alphas, then their betas (float64 bits)."""
        codes, alphas, betas = codes_of([tuple(x) for x in node.attrs["activations"]])
        n, out = len(cls.spec().default_activations), []
        for d in range(cls.directions(node)):
            sl = slice(d * n, (d + 1) * n)
            out += [int(c) for c in codes[sl]] + [p.f64(v) for v in alphas[sl]] + [p.f64(v) for v in betas[sl]]
        return out


_VARIANT_NAMES = {LSTM_FAST: "fast", LSTM_FAST_MT: "fast, threads", LSTM_GENERIC: "generic", GRU_CODE: "",
                  GRU_FAST_MT: "fast, threads by unit", GRU_FAST: "fast",
                  RNN_CODE: "", RNN_FAST: "fast", LSTM_REDUCED: "reduced weights", GRU_REDUCED: "reduced weights",
                  RNN_REDUCED: "reduced weights"}


class LSTM(Recurrent):
    name = "LSTM"
    attrs = frozenset(recurrent_spec.SPECS["LSTM"].attributes)
    at_once = (LSTM_FAST,)      # the threaded kernel (LSTM_FAST_MT) splits each direction instead
    n_inputs = 9
    outputs = ("Y", "Y_h", "Y_c")
    state_names = ("h", "c")

    @classmethod
    def out_size(cls, a):
        return a["proj_size"] or a["hidden_size"]

    @classmethod
    def weight_specs(cls, node, input_size=None):
        D, H = cls.directions(node), node.attrs["hidden_size"]
        return {**super().weight_specs(node, input_size), 7: ("P", (D, 3 * H)),
                8: ("W_proj", (D, cls.out_size(node.attrs), H))}

    @classmethod
    def validate_tensors(cls, node, model, a, D, H, Hout):
        has_proj = len(node.inputs) > 8 and bool(node.inputs[8])
        if a["proj_size"] and not has_proj:
            raise ModelFileError(f"node {node.name!r}: proj_size {a['proj_size']} needs W_proj of shape "
                                 f"{(D, Hout, H)}")
        if has_proj and not a["proj_size"]:
            raise ModelFileError(f"node {node.name!r}: W_proj given but proj_size is 0")

    @classmethod
    def fast(cls, node, dtype):
        return super().fast(node, dtype) and not node.attrs["proj_size"]

    @classmethod
    def reduced(cls, node, model, dtype):
        return super().reduced(node, model, dtype) if cls.fast(node, dtype) else None

    @classmethod
    def multi_thread(cls, node, dtype, threads):
        """The threaded kernels (lstm_direction_parallel, lstm_batches_parallel), where the runtime has them: the
        ahead-of-time one does not."""
        return (cls.fast(node, dtype) and threads > 1 and node.attrs["hidden_size"] >= PARALLEL_MIN_HIDDEN
                and runtime.current().parallel)

    @classmethod
    def two_on_two(cls, node, threads):
        """Two directions on two threads: each direction on a thread of its own (directions_on_threads), no barrier
        a step, rather than each split by unit; against the split, in one process (bench: two threads, Zen 5):
        H=128 T=25 1.42x, T=100 1.33x, B=8 1.39x; H=256 T=1 1.46x, T=100 1.05x, B=8 1.16x; H=512 T=1 1.36x, T=100
        1.01x. A batch of SPLIT_MIN_ROWS a thread still splits by batch entry (H=256 B=32: 0.92x by direction)."""
        return cls.directions(node) == 2 and threads == 2

    @classmethod
    def parts(cls, node, dtype, threads):
        """How many parts the weights are packed in (``pack_parts``): one per thread for the kernel split by unit,
        else one (the batch split runs every part on each thread)."""
        return threads if cls.multi_thread(node, dtype, threads) and not cls.two_on_two(node, threads) else 1

    @classmethod
    def gate_width(cls, node, p):
        return 4 * cls._chunk(node, p.dtype, p.threads) * cls.parts(node, p.dtype, p.threads)

    @classmethod
    def by_batch(cls, node, p, B):
        """The threaded kernel splits the batch between the threads (else the hidden units, or for two directions
        on two threads, the directions): from SPLIT_MIN_ROWS rows a thread, and for the split by unit only while a
        thread's part of the units would be at most SPLIT_MAX_UNITS."""
        if B < SPLIT_MIN_ROWS * p.threads:
            return False
        return cls.two_on_two(node, p.threads) or cls._chunk(node, p.dtype, p.threads) <= SPLIT_MAX_UNITS

    @classmethod
    def fused(cls, node, p, variant, In, B):
        """The fast kernel (one thread, or a thread of the batch split) projects the input step by step
        (lstm_direction_fused): from FUSE_MIN_ROWS rows a thread, while W and R fit FUSE_MAX_BYTES and are at most
        FUSE_ROW_BYTES a row. The kernel split
        by unit (lstm_direction_parallel's ``fused``): from UNITS_FUSE_MIN_ROWS rows while a thread's part of W and
        R is at most UNITS_FUSE_ROW_BYTES a row (and all of W and R fit FUSE_MAX_BYTES)."""
        parts = cls.parts(node, p.dtype, p.threads)
        part_bytes = 4 * cls._chunk(node, p.dtype, p.threads) * (In + cls.out_size(node.attrs)) * \
            np.dtype(p.dtype).itemsize
        if parts * part_bytes > FUSE_MAX_BYTES:
            return False
        if variant == LSTM_FAST:
            rows = B
        elif variant == LSTM_FAST_MT and cls.by_batch(node, p, B):
            rows = B // p.threads
        elif variant == LSTM_FAST_MT:
            return B >= UNITS_FUSE_MIN_ROWS and part_bytes <= B * UNITS_FUSE_ROW_BYTES
        else:
            return False
        return rows >= FUSE_MIN_ROWS and parts * part_bytes <= rows * FUSE_ROW_BYTES

    @classmethod
    def _chunk(cls, node, dtype, threads):
        return part_chunk(node.attrs["hidden_size"], cls.parts(node, dtype, threads), cls.fast(node, dtype))

    @classmethod
    def pack(cls, node, model, dtype, threads):
        a = node.attrs
        D, H = cls.directions(node), a["hidden_size"]
        ins = list(node.inputs) + [""] * (9 - len(node.inputs))
        if cls.reduced(node, model, dtype):    # single-threaded, whatever the threads
            yield from _reduced_recurrent(model, ins[1], "WT", slice(None))          # WT (D, I, 4H) or blocks
            yield from _reduced_recurrent(model, ins[2], "RT", slice(None))          # RT (D, Hout, 4H) or blocks
            Bt = model.tensors[ins[3]].astype(dtype) if ins[3] else np.zeros((D, 8 * H), dtype)
            yield "bias", Bt[:, :4 * H] + Bt[:, 4 * H:]                                # (D, 4H)       Wb + Rb
            yield "peep", (model.tensors[ins[7]].astype(dtype) if ins[7] else np.zeros((1, 3 * H), dtype))
            return
        parts = cls.parts(node, dtype, threads)
        grouped = cls.fast(node, dtype)     # the fast kernels' tiles read column groups; the generic one plain rows
        # fast: (D, parts, 4*chunk // 64, I or Hout, 64); generic: (D, 1, I or Hout, 4H)
        yield "WT", _parts(quant.decoded(model, ins[1]), dtype, parts, model, grouped)
        yield "RT", _parts(quant.decoded(model, ins[2]), dtype, parts, model, grouped)
        Bt = model.tensors[ins[3]].astype(dtype) if ins[3] else np.zeros((D, 8 * H), dtype)
        bias = Bt[:, :4 * H] + Bt[:, 4 * H:]                                           # (D, 4H)       Wb + Rb
        # (D, parts, 1, 4*chunk): one row is the same memory in either layout
        yield "bias", pack_parts(bias[:, None, :], parts, grouped).reshape(D, parts, 1, -1)
        yield "peep", (model.tensors[ins[7]].astype(dtype) if ins[7] else np.zeros((1, 3 * H), dtype))  # (D|1, 3H)
        if not cls.fast(node, dtype) and ins[8]:
            yield "projT", _transposed(model.tensors[ins[8]], dtype)                   # (D, H, Hout)

    @classmethod
    def variant(cls, node, p, T, B):
        if cls.reduced(node, p.model, p.dtype):
            return LSTM_REDUCED
        if not cls.fast(node, p.dtype):
            return LSTM_GENERIC
        if cls.multi_thread(node, p.dtype, p.threads) and cls.two_on_two(node, p.threads):
            return LSTM_FAST_MT if cls.by_batch(node, p, B) else LSTM_FAST     # (then directions_on_threads)
        H = node.attrs["hidden_size"]
        if cls.multi_thread(node, p.dtype, p.threads) and (H >= PARALLEL_ANY_STEPS_HIDDEN or T >= PARALLEL_MIN_STEPS) \
                and not (T == 1 and B == 1 and H < PARALLEL_STEP_HIDDEN):
            # at any batch: each thread's product over the batch runs on the engine's register tiles (T=100 B=32
            # H=256, 2 threads: 19.0 ms, against 35.6 ms for the one-thread kernel with OpenBLAS on both threads).
            # Shorter calls at smaller H run the parts in sequence on one thread: starting the region costs more
            # than half of their product saves (H=128, 2 threads: one step 16.8 us threaded against 11.7). A single
            # step of one row runs in sequence below PARALLEL_STEP_HIDDEN: threaded, its worse host mode is the
            # slower (program.py)
            return LSTM_FAST_MT
        return LSTM_FAST

    @classmethod
    def own_params(cls, node, p, variant, B, fused, on_threads):
        ins = list(node.inputs) + [""] * (9 - len(node.inputs))
        peep_off, peep_shape = p.weight("peep")
        if variant == LSTM_REDUCED:
            int8 = cls.reduced(node, p.model, p.dtype) == "int8"
            return cls.reduced_params(node, p) + [
                p.weight("RT")[0], p.weight("RT_scale")[0] if int8 else 0, p.weight("RT_neg")[0] if int8 else 0,
                p.weight("bias")[0], peep_off, int(bool(ins[7])), node.attrs["input_forget"], peep_shape[0]]
        wt_off, wt_shape = p.weight("WT")
        params = [wt_off, p.weight("RT")[0], p.weight("bias")[0], peep_off, int(bool(ins[7])),
                  node.attrs["input_forget"], peep_shape[0]]
        if variant == LSTM_GENERIC:    # one part: WT (D, I, 4H), RT (D, Hout, 4H), bias (D, 4H)
            params += [p.weight("projT")[0] if ins[8] else 0, int(bool(ins[8]))] + cls.activation_params(node, p)
        else:    # parts, chunk (groups of 64 = 4 x 16), fused projection, threads splitting the batch (0: none),
            #      directions at once
            params += [wt_shape[1], wt_shape[2] * 16, int(fused),
                       p.threads if variant == LSTM_FAST_MT and cls.by_batch(node, p, B) else 0, int(on_threads)]
        return params


class GRU(Recurrent):
    name = "GRU"
    attrs = frozenset(recurrent_spec.SPECS["GRU"].attributes)
    at_once = (GRU_CODE, GRU_FAST)   # the threaded GRU (GRU_FAST_MT) splits each direction instead

    @classmethod
    def multi_thread(cls, node, dtype, threads):
        """The threaded kernel (lstm_fast.lstm_direction_parallel with gru): float32, default activations,
        linear_before_reset (what PyTorch exports: every gate of a unit needs h only, so one barrier a step), from
        GRU_PARALLEL_MIN_HIDDEN units, where the runtime has it; it then runs every call, a stream step too."""
        return (cls.fast(node, dtype) and node.attrs["linear_before_reset"] == 1 and threads > 1
                and node.attrs["hidden_size"] >= GRU_PARALLEL_MIN_HIDDEN and runtime.current().parallel)

    @classmethod
    def grouped(cls, node, dtype):
        """The kernels on the column groups (GRU_FAST_MT, GRU_FAST): float32, default activations,
        linear_before_reset. The others (GRU_CODE) read the plain layout. GRU_FAST against GRU_CODE (whose recurrence
        is recurrent_product, four rows of R per pass over the gates) on the 2-core Xeon (2 MiB L2), alternating
        processes: one thread, T=100 B=1 H=128 264 -> 210-235 us, H=256 962-1003 -> 774-861; a run of one step with
        the state in and out H=128 6.0-6.5 -> 5.5 us, H=256 18.5-20.8 -> 16.2-16.4; T=100 B=32 H=128 and H=64 even.
        Two threads (the projection's rows on both, grouped_rows_parallel): T=100 H=128 228-231 -> 191-192 us,
        bidirectional (a direction a thread) 269-277 -> 221, B=32 H=128 even."""
        return cls.fast(node, dtype) and node.attrs["linear_before_reset"] == 1

    @classmethod
    def parts(cls, node, dtype, threads):
        """How many parts the grouped weights are packed in: one per thread for the threaded GRU, else one."""
        return threads if cls.multi_thread(node, dtype, threads) else 1

    @classmethod
    def _chunk(cls, node, parts):
        return part_chunk(node.attrs["hidden_size"], parts, True)

    @classmethod
    def gate_width(cls, node, p):
        if cls.grouped(node, p.dtype) and not cls.reduced(node, p.model, p.dtype):
            parts = cls.parts(node, p.dtype, p.threads)
            return parts * part_width(cls._chunk(node, parts), 3, True)
        return super().gate_width(node, p)

    @classmethod
    def pack(cls, node, model, dtype, threads):
        if cls.reduced(node, model, dtype):
            D, H = cls.directions(node), node.attrs["hidden_size"]
            ins = list(node.inputs) + [""] * (cls.n_inputs - len(node.inputs))
            yield from _reduced_recurrent(model, ins[1], "WT", slice(None))          # WT (D, I, 3H) or blocks
            yield from _reduced_recurrent(model, ins[2], "RTzr", slice(0, 2 * H))    # (D, H, 2H) z, r
            yield from _reduced_recurrent(model, ins[2], "RTh", slice(2 * H, 3 * H))  # (D, H, H)
            Bt = model.tensors[ins[3]].astype(dtype) if ins[3] else np.zeros((D, 6 * H), dtype)
            yield "bias", cls._bias(Bt, H)
            return
        D, H, W, R, Bt = cls._tensors(node, model, dtype)
        if cls.grouped(node, dtype):
            # one part per thread (or one), in column groups: WT (D, parts, width // 64, I, 64), RT (D, parts,
            # width // 64, H, 64), blocks z, r, h of chunk units each; bias (D, parts, 1, 4*chunk) z, r, Wbh, Rbh
            parts = cls.parts(node, dtype, threads)
            chunk = cls._chunk(node, parts)
            yield "WT", _parts(W, dtype, parts, model, True, 3)
            yield "RT", _parts(R, dtype, parts, model, True, 3)
            yield "bias", pack_parts(cls._bias(Bt, H)[:, None, :], parts, False, 4, chunk).reshape(
                D, parts, 1, 4 * chunk)
            return
        RT = R.transpose(0, 2, 1)                                                  # (D, H, 3H) z, r, h
        yield "WT", np.ascontiguousarray(W.transpose(0, 2, 1))                     # (D, I, 3H)
        yield "RTzr", np.ascontiguousarray(RT[:, :, :2 * H])                       # (D, H, 2H)
        yield "RTh", np.ascontiguousarray(RT[:, :, 2 * H:])                        # (D, H, H)
        yield "bias", cls._bias(Bt, H)

    @staticmethod
    def _bias(Bt, H):
        return np.concatenate([Bt[:, :2 * H] + Bt[:, 3 * H:5 * H],                 # (D, 4H)
                               Bt[:, 2 * H:3 * H], Bt[:, 5 * H:]], axis=1)

    @classmethod
    def variant(cls, node, p, T, B):
        if cls.reduced(node, p.model, p.dtype):
            return GRU_REDUCED
        if cls.multi_thread(node, p.dtype, p.threads):
            return GRU_FAST_MT
        return GRU_FAST if cls.grouped(node, p.dtype) else GRU_CODE

    @classmethod
    def own_params(cls, node, p, variant, B, fused, on_threads):
        if variant in (GRU_FAST_MT, GRU_FAST):   # parts, chunk, the columns of a part (three blocks, whole groups),
            #                                        directions at once
            parts = cls.parts(node, p.dtype, p.threads)
            chunk = cls._chunk(node, parts)
            return [p.weight("WT")[0], p.weight("RT")[0], p.weight("bias")[0], parts, chunk,
                    part_width(chunk, 3, True), int(on_threads)]
        if variant == GRU_REDUCED:
            int8 = cls.reduced(node, p.model, p.dtype) == "int8"
            extra = [p.weight(key)[0] if int8 or key in ("RTzr", "RTh") else 0
                     for key in ("RTzr", "RTzr_scale", "RTzr_neg", "RTh", "RTh_scale", "RTh_neg")]
            return cls.reduced_params(node, p) + extra + [
                p.weight("bias")[0], node.attrs["linear_before_reset"],
                int(cls.fast(node, p.dtype))] + cls.activation_params(node, p)
        return [p.weight("WT")[0], p.weight("RTzr")[0], p.weight("RTh")[0], p.weight("bias")[0],
                node.attrs["linear_before_reset"], int(cls.fast(node, p.dtype))] + cls.activation_params(node, p) + [
                int(on_threads)]


class RNN(Recurrent):
    name = "RNN"
    attrs = frozenset(recurrent_spec.SPECS["RNN"].attributes)
    at_once = (RNN_CODE, RNN_FAST)

    @staticmethod
    def _groups_width(node):
        """RNN_FAST's columns: H rounded up to whole column groups."""
        return part_width(part_chunk(node.attrs["hidden_size"], 1, True), 1, True)

    @classmethod
    def gate_width(cls, node, p):
        if cls.fast(node, p.dtype) and not cls.reduced(node, p.model, p.dtype):
            return cls._groups_width(node)
        return super().gate_width(node, p)

    @classmethod
    def pack(cls, node, model, dtype, threads):
        if cls.reduced(node, model, dtype):
            D, H = cls.directions(node), node.attrs["hidden_size"]
            ins = list(node.inputs) + [""] * (cls.n_inputs - len(node.inputs))
            yield from _reduced_recurrent(model, ins[1], "WT", slice(None))          # WT (D, I, H) or blocks
            yield from _reduced_recurrent(model, ins[2], "RT", slice(None))          # RT (D, H, H) or blocks
            Bt = model.tensors[ins[3]].astype(dtype) if ins[3] else np.zeros((D, 2 * H), dtype)
            yield "bias", Bt[:, :H] + Bt[:, H:]                                    # (D, H)
            return
        D, H, W, R, Bt = cls._tensors(node, model, dtype)
        if cls.fast(node, dtype):       # tanh: column groups, (D, G // 64, I or H, 64); bias (D, G)
            G = cls._groups_width(node)
            yield "WT", _parts(W, dtype, 1, model, True, 1)[:, 0]
            yield "RT", _parts(R, dtype, 1, model, True, 1)[:, 0]
            bias = np.zeros((D, G), dtype)
            bias[:, :H] = Bt[:, :H] + Bt[:, H:]
            yield "bias", bias
            return
        yield "WT", np.ascontiguousarray(W.transpose(0, 2, 1))                     # (D, I, H)
        yield "RT", np.ascontiguousarray(R.transpose(0, 2, 1))                     # (D, H, H)
        yield "bias", Bt[:, :H] + Bt[:, H:]                                        # (D, H)

    @classmethod
    def variant(cls, node, p, T, B):
        """RNN_FAST against RNN_CODE (recurrent_product, four rows of R per pass over the sums) on the 2-core Xeon
        (2 MiB L2), alternating processes, one thread: T=100 B=1 H=64 26.5 -> 22.5 us, H=100 57-63 -> 49, H=128
        84-91 -> 64-65, H=256 309-313 -> 267-269; bidirectional H=128 181 -> 128; B=32 H=128 1.80 -> 1.63-1.65 ms; a
        run of one step with the state in and out H=128 3.4-3.5 -> 3.15-3.2 us, H=256 6.6-7.2 -> 5.9. Two threads:
        T=100 H=128 85-87 -> 62-65 us, H=256 288-293 -> 245-249, bidirectional H=128 113-115 -> 80."""
        if cls.reduced(node, p.model, p.dtype):
            return RNN_REDUCED
        return RNN_FAST if cls.fast(node, p.dtype) else RNN_CODE

    @classmethod
    def own_params(cls, node, p, variant, B, fused, on_threads):
        if variant == RNN_REDUCED:
            int8 = cls.reduced(node, p.model, p.dtype) == "int8"
            return cls.reduced_params(node, p) + [
                p.weight("RT")[0], p.weight("RT_scale")[0] if int8 else 0, p.weight("RT_neg")[0] if int8 else 0,
                p.weight("bias")[0], int(cls.fast(node, p.dtype))] + cls.activation_params(node, p)
        if variant == RNN_FAST:         # the columns (whole groups), directions at once
            return [p.weight("WT")[0], p.weight("RT")[0], p.weight("bias")[0], cls._groups_width(node),
                    int(on_threads)]
        return [p.weight("WT")[0], p.weight("RT")[0], p.weight("bias")[0],
                int(cls.fast(node, p.dtype))] + cls.activation_params(node, p) + [int(on_threads)]


RECURRENT_OPS = [LSTM, GRU, RNN]


def _weight_shape(node, model, index, what, required=False):
    """The shape of the node's weight input ``index``: a constant tensor's, or the declared shape of a graph input
    (strings for its symbolic dimensions); None when the input is absent."""
    name = node.inputs[index] if index < len(node.inputs) else ""
    if not name:
        if required:
            raise ModelFileError(f"node {node.name!r}: input {what} is required")
        return None
    if name in model.tensors:
        t = model.tensors[name]
        if t.dtype.kind != "f" and name not in model.weight_encodings:
            raise ModelFileError(f"node {node.name!r}: {what} must be a float tensor, got {t.dtype}")
        return tuple(t.shape)
    spec = next((s for s in model.inputs if s.name == name), None)
    if spec is None:
        raise ModelFileError(f"node {node.name!r}: {what} ({name!r}) must be a constant tensor stored in the model "
                             f"or a graph input, not a value computed by the graph")
    if not spec.dtype.startswith("float"):
        raise ModelFileError(f"node {node.name!r}: {what} (graph input {name!r}) must be a float tensor, got "
                             f"{spec.dtype}")
    return tuple(spec.shape)


def _shape_now(node, p, index):
    """The shape of weight input ``index`` in this plan: a constant's, or that of the array the call feeds."""
    name = node.inputs[index]
    return tuple(p.model.tensors[name].shape) if name in p.model.tensors else tuple(p.call.shapes[name])
