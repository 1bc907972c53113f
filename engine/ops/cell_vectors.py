"""The LSTM cell on 16 hidden units at a time, written in LLVM IR (as the register tiles, engine/ops/tiles.py) so that
every operation runs on 16-lane vectors.

Numba's scalar loops vectorise too, but LLVM chooses 8-lane vectors on Intel cores (it prefers 256-bit registers
there) and divides with vdivps: on a 2-core Intel Xeon (AVX-512), 256 units of the cell took 0.60 us, and the cells
of a batch of 32 at H=256 were 10% of each step. Here each value is one 16-lane vector from load to store, and with
AVX-512 each quotient of tanh's rational is a reciprocal estimate refined once by Newton's method (relative error
~2^-28 before rounding, a float32 ulp at most from the quotient) rather than a division.

One call covers VECTORS vectors of 16 units (their operations interleaved, so that the core overlaps them):

    f(g, go, chunk, c, co, h, ho, y, yo, peep, po, H, use_peep, clip, input_forget, n)

for the units l < n (n <= 16 * VECTORS; the others are neither read nor written):

    i, o, f, z = g[go + l], g[go + chunk + l], g[go + 2 chunk + l], g[go + 3 chunk + l]   (ONNX's gate order)
    with use_peep: i += peep[po + l] * c[co + l], f += peep[po + 2 H + l] * c[co + l]      (the old c)
    i, f = sigmoid(clip(i)), sigmoid(clip(f)); z = tanh(clip(z)); with input_forget: f = 1 - i
    c[co + l] = f * c[co + l] + i * z
    with use_peep: o += peep[po + H + l] * c[co + l]                                     (the new c)
    h[ho + l] = y[yo + l] = sigmoid(clip(o)) * tanh(c[co + l])

All offsets are in elements of each array's data; c, h, y and peep of one float dtype, which the cell computes in
(float64 in the float64 executor, whose quotient is a division), g of either (the float32 gates of a float64 state
are widened as they are loaded). tanh is numeric.tanh32's rational, clamps and saturation, lane by lane; sigmoid(x) =
1/2 + tanh(x / 2) / 2; clip as numeric.clip_value (NaN passes through every clamp).
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .tiles import host_feature

# tanh(x) = x * P(x^2) / Q(x^2) on [-C, C], +-1 beyond (MLAS / Eigen coefficients), float32 as numeric.py's
TANH_C = 7.90531110763549805
TANH_P = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
          1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03)       # A13 .. A1, Horner's order
TANH_Q = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)   # B6 .. B0
TANH_SAT = 9.0     # beyond it float32 tanh rounds to exactly +-1

AVX512 = host_feature("avx512f")                # AVX-512's 14-bit reciprocal estimate, where the CPU has it

_LANES = 16
VECTORS = 2        # 16-unit vectors a call: H=256 0.42 us a row against 0.44 with one (Xeon)


def _f32(x):
    """x rounded to float32, as a Python float (the scalar code's F32 constants)."""
    return float(np.float32(x))


def lstm_cell_vector():
    """The intrinsic of the cell on up to 16 * VECTORS units (see the module docstring)."""

    def codegen(context, builder, sig, args):
        i32, i64 = ir.IntType(32), ir.IntType(64)
        ety = context.get_value_type(sig.args[3].dtype)          # the state's precision
        single = ety == ir.FloatType()
        vty = ir.VectorType(ety, _LANES)
        gty = ir.VectorType(context.get_value_type(sig.args[0].dtype), _LANES)
        bool16 = ir.VectorType(ir.IntType(1), _LANES)
        args = [context.cast(builder, v, t, types.int64) if isinstance(t, types.Integer) else v
                for v, t in zip(args, sig.args)]          # every offset and count as a 64-bit int
        (g_v, go, chunk, c_v, co, h_v, ho, y_v, yo, p_v, po, H, use_peep, clip, input_forget, n) = args
        g_a, c_a, h_a, y_a, p_a = (context.make_array(sig.args[k])(context, builder, v)
                                   for k, v in ((0, g_v), (3, c_v), (5, h_v), (7, y_v), (9, p_v)))
        suffix = "v16f32" if single else "v16f64"

        def declared_load(ty):
            name = "v16f32" if ty.element == ir.FloatType() else "v16f64"
            return builder.module.declare_intrinsic(
                f"llvm.masked.load.{name}.p0", fnty=ir.FunctionType(ty, [ty.as_pointer(), i32, bool16, ty]))
        masked_load, g_load = declared_load(vty), declared_load(gty)
        masked_store = builder.module.declare_intrinsic(
            f"llvm.masked.store.{suffix}.p0", fnty=ir.FunctionType(ir.VoidType(), [vty, vty.as_pointer(), i32, bool16]))
        fmuladd = builder.module.declare_intrinsic(f"llvm.fmuladd.{suffix}", fnty=ir.FunctionType(vty, [vty] * 3))
        i64x16 = ir.VectorType(i64, _LANES)
        zero = ir.Constant(vty, None)

        def ptr(arr, at, ty=vty):
            return builder.bitcast(builder.gep(arr.data, [at]), ty.as_pointer())

        def load(arr, at, mask):
            if arr is g_a and gty != vty:     # float32 gates of a float64 state (the reduced kernels' float64 build)
                v = builder.call(g_load, [ptr(arr, at, gty), ir.Constant(i32, 4), mask, ir.Constant(gty, None)])
                return builder.fptrunc(v, vty) if single else builder.fpext(v, vty)
            return builder.call(masked_load, [ptr(arr, at), ir.Constant(i32, 4), mask, zero])

        def store(value, arr, at, mask):
            builder.call(masked_store, [value, ptr(arr, at), ir.Constant(i32, 4), mask])

        def const(x):
            return ir.Constant(vty, [_f32(x)] * _LANES)

        def splat(value):
            v = builder.insert_element(ir.Constant(vty, ir.Undefined), value, ir.Constant(i32, 0))
            return builder.shuffle_vector(v, ir.Constant(vty, ir.Undefined), ir.Constant(ir.VectorType(i32, _LANES),
                                                                                     [0] * _LANES))

        def mul(a, b):
            return builder.fmul(a, b)

        def fma(a, b, c):
            return builder.call(fmuladd, [a, b, c])

        def above(x, bound):           # x > bound ? bound : x (NaN passes)
            return builder.select(builder.fcmp_ordered(">", x, bound), bound, x)

        def below(x, bound):
            return builder.select(builder.fcmp_ordered("<", x, bound), bound, x)

        if clip.type != ety:         # as the scalar code: clip in the arrays' precision
            clip = builder.fptrunc(clip, ety) if single else builder.fpext(clip, ety)
        clip_hi = splat(clip)
        clip_lo = builder.fneg(clip_hi)

        def clipped(x):
            return below(above(x, clip_hi), clip_lo)

        def quotient(p, q):
            if not (single and AVX512):
                return builder.fdiv(p, q)
            rcp = builder.module.declare_intrinsic(
                "llvm.x86.avx512.rcp14.ps.512",
                fnty=ir.FunctionType(vty, [vty, vty, ir.IntType(16)]))
            r = builder.call(rcp, [q, zero, ir.Constant(ir.IntType(16), -1)])
            # one Newton step: r' = r + r (1 - q r); then p r' (each an FMA)
            e = fma(builder.fneg(q), r, const(1.0))
            r = fma(r, e, r)
            return mul(p, r)

        def tanh(x):
            big = builder.fcmp_ordered(">", x, const(TANH_SAT))
            small = builder.fcmp_ordered("<", x, const(-TANH_SAT))
            x = below(above(x, const(TANH_C)), const(-TANH_C))
            x2 = mul(x, x)
            p = fma(x2, const(TANH_P[0]), const(TANH_P[1]))
            for a in TANH_P[2:]:
                p = fma(x2, p, const(a))
            p = mul(x, p)
            q = fma(x2, const(TANH_Q[0]), const(TANH_Q[1]))
            for b in TANH_Q[2:]:
                q = fma(x2, q, const(b))
            r = quotient(p, q)
            r = builder.select(big, const(1.0), r)
            return builder.select(small, const(-1.0), r)

        def sigmoid(x):
            return fma(const(0.5), tanh(mul(const(0.5), x)), const(0.5))

        def lanes(k, n_k):
            """The mask of the lanes of vector k (units 16 k ..) below n."""
            lim = builder.insert_element(ir.Constant(i64x16, ir.Undefined), n_k, ir.Constant(i32, 0))
            lim = builder.shuffle_vector(lim, ir.Constant(i64x16, ir.Undefined),
                                         ir.Constant(ir.VectorType(i32, _LANES), [0] * _LANES))
            return builder.icmp_signed("<", ir.Constant(i64x16, [16 * k + l for l in range(_LANES)]), lim)

        masks = [lanes(k, n) for k in range(VECTORS)]
        peeped = builder.trunc(use_peep, ir.IntType(1)) if use_peep.type != ir.IntType(1) else use_peep
        flag = builder.trunc(input_forget, ir.IntType(1)) if input_forget.type != ir.IntType(1) else input_forget

        def each(fn, *cols):
            return [fn(*(col[k] for col in cols)) for k in range(VECTORS)]

        def at(off, k):
            return builder.add(off, ir.Constant(i64, 16 * k))

        def loads(arr, off):
            return [load(arr, at(off, k), masks[k]) for k in range(VECTORS)]

        gi, gof, gff, gz = (loads(g_a, builder.add(go, builder.mul(chunk, ir.Constant(i64, k)))) for k in range(4))
        cold = loads(c_a, co)
        slots = [[cgutils.alloca_once_value(builder, v) for v in col] for col in (gi, gff)]
        with builder.if_then(peeped):
            pi = loads(p_a, po)
            pf = loads(p_a, builder.add(po, builder.mul(H, ir.Constant(i64, 2))))
            for k in range(VECTORS):
                builder.store(fma(pi[k], cold[k], gi[k]), slots[0][k])
                builder.store(fma(pf[k], cold[k], gff[k]), slots[1][k])
        i = each(lambda s: sigmoid(clipped(builder.load(s))), slots[0])
        f = each(lambda s: sigmoid(clipped(builder.load(s))), slots[1])
        z = each(lambda v: tanh(clipped(v)), gz)
        f = each(lambda a, b: builder.select(flag, builder.fsub(const(1.0), a), b), i, f)
        cnew = each(lambda a, b, cc, zz: fma(b, cc, mul(a, zz)), i, f, cold, z)
        for k in range(VECTORS):
            store(cnew[k], c_a, at(co, k), masks[k])
        oslot = [cgutils.alloca_once_value(builder, v) for v in gof]
        with builder.if_then(peeped):
            pov = loads(p_a, builder.add(po, H))
            for k in range(VECTORS):
                builder.store(fma(pov[k], cnew[k], gof[k]), oslot[k])
        o = each(lambda s: sigmoid(clipped(builder.load(s))), oslot)
        hn = each(lambda a, cc: mul(a, tanh(cc)), o, cnew)
        for k in range(VECTORS):
            store(hn[k], h_a, at(ho, k), masks[k])
            store(hn[k], y_a, at(yo, k), masks[k])
        return context.get_dummy_value()

    def make(typingctx, g, go, chunk, c, co, h, ho, y, yo, peep, po, H, use_peep, clip, input_forget, n):
        if not (isinstance(g, types.Array) and isinstance(g.dtype, types.Float)
                and all(isinstance(a, types.Array) and a.dtype == c.dtype for a in (c, h, y, peep))
                and isinstance(c.dtype, types.Float)):
            return None
        if not all(isinstance(a, types.Integer) for a in (go, chunk, co, ho, yo, po, H, n)):
            return None
        if not isinstance(clip, types.Float) or not all(isinstance(a, types.Boolean) for a in (use_peep, input_forget)):
            return None
        return types.void(g, go, chunk, c, co, h, ho, y, yo, peep, po, H, use_peep, clip, input_forget, n), codegen
    make.__name__ = "_lstm_cell16"
    return intrinsic(make)
