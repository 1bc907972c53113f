"""What every op provides, and the helpers their checks share.

An op is a class with four class methods, all optional but ``plan``:

    validate(node, model)               static checks when a model is loaded (attributes, constant inputs)
    pack(node, model, dtype, threads)   yields (name, array): the weights in the layout its kernel reads, packed
                                        once per Session (engine/plan.py, Weights), one array at a time so that
                                        loading holds little more than the file; ``packed_inputs`` lists the
                                        inputs it consumes, which are then not stored as they are. It reads
                                        ``model.tensors`` only: when some packed inputs are graph inputs
                                        (``call_inputs``), it runs on each call with the call's arrays there
                                        (engine/call_weights.py)
    plan(node, p)                       for one set of input shapes: output shapes, checks, and the instruction(s)
                                        that run the node (engine/plan.py, Planner), or its outputs folded when
                                        they are known at plan time
    run functions                       each op family has one @njit ``run_<family>(code, prog, pc, F, I)`` that
                                        executes its instructions (engine/executor.py dispatches by opcode range),
                                        in the family's kernel module (program_kernels, recurrent_kernels,
                                        layer_kernels, vision_kernels)

The op modules (this one, program, glue, layers, vision, recurrent, activations) import no Numba: a Session plans
with them on a machine that runs the ahead-of-time runtime (engine/aot.py) without Numba. Kernels and run functions
live in the *_kernels.py, numeric.py, lstm_fast.py, lstm_kernels.py and gru_rnn.py modules.

Adding an op: a class in its family's op module with validate/plan, its kernel and a branch in the family's run
function (in the kernel module), and an entry in the registry (engine/ops/__init__.py).
"""

from ..errors import ModelFileError
from .program import MAX_RANK


class Op:
    name = ""
    recurrent = False
    packed_inputs: tuple = ()
    # the attribute names the op reads: a stored node with any other is refused at load (Model.validate), so that a
    # file from a newer converter whose attribute changes the result (a fused Relu, say) is not run without it
    attrs: frozenset = frozenset()

    @classmethod
    def validate(cls, node, model):
        """Raise ModelFileError / UnsupportedModelError if the node is malformed."""

    @classmethod
    def pack(cls, node, model, dtype, threads):
        """Yield (name, array) for each packed constant this node's kernel reads."""
        return iter(())

    @classmethod
    def call_inputs(cls, node, model):
        """The indices of the packed inputs that are not constants of the model but graph inputs, fed by the call."""
        return [i for i in cls.packed_inputs
                if i < len(node.inputs) and node.inputs[i] and node.inputs[i] not in model.tensors]

    @classmethod
    def reads(cls, node, streaming):
        """The names of the values the node reads (all its inputs but the absent ones)."""
        return [name for name in node.inputs if name]

    @classmethod
    def plan(cls, node, p):
        """Describe the node to the planner: outputs, checks, instructions."""
        raise NotImplementedError


INT_LIMIT = 2 ** 62   # attribute values travel to the executor as int64 (offsets and strides are derived from them)


def is_int(x, lo=-INT_LIMIT, hi=INT_LIMIT):
    return isinstance(x, int) and not isinstance(x, bool) and lo <= x <= hi


def is_number(x):
    """An int or float attribute that converts to a float64 (inf and NaN included, 10**400 not)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    try:
        float(x)
    except OverflowError:
        return False
    return True


def int_list(node, key, allow_none=False):
    v = node.attrs.get(key)
    if not isinstance(v, list) or not all(is_int(x) or (allow_none and x is None) for x in v):
        raise ModelFileError(f"node {node.name!r} ({node.op}): attribute {key!r} must be a list of integers "
                             f"(each within +-2**62)")
    return v


def check_arity(node, n_in, n_out=1):
    """Exactly ``n_in`` present inputs (an int) or a range (a tuple), and ``n_out`` present outputs."""
    lo, hi = (n_in, n_in) if isinstance(n_in, int) else n_in
    if not (lo <= len(node.inputs) <= hi) or not all(node.inputs[:lo]) or len(node.outputs) != n_out \
            or not all(node.outputs):
        want = f"{lo}" if lo == hi else f"{lo} to {hi}"
        raise ModelFileError(f"node {node.name!r} ({node.op}) takes {want} input(s) and gives {n_out} output(s)")


def release_pages(model, arr):
    """Once a packed weight is copied: let the pages of ``arr`` in the model's file mapping go (Model.release_pages),
    where the model has one."""
    release = getattr(model, "release_pages", None)
    if release is not None:
        release(arr)


def distinct_axes(node, key="axes"):
    """The node's ``axes`` attribute: distinct non-negative integers."""
    axes = int_list(node, key)
    if any(a < 0 for a in axes) or len(set(axes)) != len(axes):
        raise ModelFileError(f"node {node.name!r}: {node.op} axes {axes} must be distinct and non-negative")
    return axes


def contiguous_strides(shape):
    """Element strides of a C-contiguous array of ``shape``."""
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= int(d)
    return strides[::-1]


def check_axis_attr(node, key="axis"):
    v = node.attrs.get(key)
    if not is_int(v, 0):
        raise ModelFileError(f"node {node.name!r} ({node.op}): {key} must be a non-negative integer")


def merge_axes(shape, *strides):
    """The same strided loop over fewer, longer axes: axes of size 1 dropped, and an axis merged into the one before
    it where every operand steps over both as one (a slice of whole rows is one run, not a loop of short ones).
    ``strides``: one list per operand (0 along broadcast axes)."""
    keep = [k for k, n in enumerate(shape) if n != 1]
    if not keep:
        return [1], *[[1] for _ in strides]
    if any(shape[k] == 0 for k in keep):
        return list(shape), *[list(s) for s in strides]
    dims = [[shape[keep[0]], *[s[keep[0]] for s in strides]]]
    for k in keep[1:]:
        n = shape[k]
        prev = dims[-1]
        if all(prev[1 + j] == s[k] * n for j, s in enumerate(strides)):
            prev[0] *= n
            prev[1:] = [s[k] for s in strides]
        else:
            dims.append([n, *[s[k] for s in strides]])
    return [d[0] for d in dims], *[[d[1 + j] for d in dims] for j in range(len(strides))]


def broadcast_shapes(p, vals):
    """(output shape, element strides of each value padded to MAX_RANK, 0 along broadcast axes), or a clear error."""
    rank = max(v.rank for v in vals)
    if rank > MAX_RANK:
        raise p.unsupported(f"tensors of rank {rank} (at most {MAX_RANK})")
    shapes = [[1] * (rank - v.rank) + list(v.shape) for v in vals]
    out = []
    for dims in zip(*shapes):
        big = {d for d in dims if d != 1}
        if len(big) > 1:
            raise p.error(f"operands of shapes {', '.join(str(v.shape) for v in vals)} cannot be broadcast together")
        out.append(big.pop() if big else 1)
    strides = []
    for s in shapes:
        st = [0 if d == 1 and o != 1 else x for d, o, x in zip(s, out, contiguous_strides(s))]
        strides.append([0] * (MAX_RANK - rank) + st)
    return out, strides


def broadcast_loop(p, vals):
    """The strided loop of an elementwise op over ``vals`` under numpy broadcasting, its output contiguous: (the
    index space, padded to MAX_RANK with leading 1s, and each value's strides, padded with 0s), with the axes
    merge_axes can merge merged."""
    shape, strides = broadcast_shapes(p, vals)
    full = [1] * (MAX_RANK - len(shape)) + list(shape)
    loop, *strides = merge_axes(full, *strides, contiguous_strides(full))
    pad = MAX_RANK - len(loop)
    return [1] * pad + loop, [[0] * pad + st for st in strides[:-1]]
