"""Register tiles: the inner loop of every matrix product the engine computes itself, written in LLVM IR (Numba has
no vector types) so that the sums stay in registers for all of K.

One tile is ``rows`` rows of activations against ``blocks`` blocks of 16 columns of weights:

    f(acc, j, stride, W, off, x, xo, kstride, nk, wstride)
    acc[r * stride + j + c] (c < 16 * blocks) += sum over steps kk < nk of x[row r, step kk] . W[step kk, c]

W's step kk starts at byte ``off + kk * wstride`` of W's data, its blocks one after another. The kinds:

    "float"  one k per step; x (row r's element k at xo + r * kstride + kk) and W both of the compute dtype (float32,
             or float64 in the float64 executor); FMA where the CPU has it. W may be a plain row-major (K, N) matrix
             (wstride its row pitch), so weights need no repacking.
    "bf16"   a pair of k per step: each 32-bit lane of a 64-byte block holds the pair's two bfloat16 weights, widened
             by a shift (low) and a mask (high); x float32 (row r's element k at xo + r * kstride + k), acc float32
    "int8"   a quad of k per step: x an int32 array whose element xo + r * kstride + kk holds row r's quad kk as four
             u8 (zero point 128), acc int32; vpdpbusd with AVX512-VNNI, else the same exact sums in portable code

The reduced kinds read their weights in column groups (engine/ops/recurrent.py ``group_pack``: wstride 256, four
blocks). The rows share each load of W, and each row's value is broadcast once per step, so a 6-row, 4-block float
tile does 24 FMAs for 10 loads: on a Zen 5 core this runs at ~110 GFLOP/s for any K (one-thread OpenBLAS 0.3.30:
~70 GFLOP/s at the shapes of an LSTM's recurrent product).
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..config import AOT_BUILD

def host_feature(name):
    """Whether the kernels are compiled for this host (no AOT build, no NUMBA_CPU_NAME) and its CPU has the LLVM
    feature ``name``; False on any doubt, so the caller emits its portable code."""
    try:
        import llvmlite.binding as llb
        from numba.core import config as numba_config
        return (not AOT_BUILD and numba_config.CPU_NAME is None
                and bool(llb.get_host_cpu_features().get(name, False)))
    except Exception:                           # noqa: BLE001
        return False


VNNI = host_feature("avx512vnni")               # the integer dot product in one instruction

_I32x16 = ir.VectorType(ir.IntType(32), 16)


def _int8_madd(builder, acc, xs, w):
    """acc (16 x int32) + the dot products of each lane's quad of u8 in xs with its quad of int8 in w: vpdpbusd
    where the CPU has AVX512-VNNI, else the same exact sums in portable vector code."""
    if VNNI:
        dp = builder.module.declare_intrinsic("llvm.x86.avx512.vpdpbusd.512",
                                              fnty=ir.FunctionType(_I32x16, [_I32x16] * 3))
        return builder.call(dp, [acc, xs, w])
    i32 = ir.IntType(32)
    v64 = ir.VectorType(ir.IntType(8), 64)
    wide = builder.sext(builder.bitcast(w, v64), ir.VectorType(i32, 64))
    prod = builder.mul(wide, builder.zext(builder.bitcast(xs, v64), ir.VectorType(i32, 64)))
    for e in range(4):
        acc = builder.add(acc, builder.shuffle_vector(prod, ir.Constant(ir.VectorType(i32, 64), ir.Undefined),
                                                      ir.Constant(_I32x16, [4 * c + e for c in range(16)])))
    return acc


def _scaled_add(builder, m, v, g):
    """g + m * v (16 x float32) as llvm.fmuladd: fused wherever the CPU has FMA, and the same in every kernel
    compiled for it. Numba's fast-math puts reassoc and contract on every float operation of a function, intrinsics'
    included, so a plain (sa * scale) * v may be reassociated in one kernel and not in another (1 ulp apart); a call
    is never reassociated. g = -0.0 gives the product alone, rounded once."""
    f32x16 = ir.VectorType(ir.FloatType(), 16)
    fn = builder.module.declare_intrinsic("llvm.fmuladd.v16f32", fnty=ir.FunctionType(f32x16, [f32x16] * 3))
    return builder.call(fn, [m, v, g])


def tile_product(kind, rows, blocks=4, dequant=None, masked=False, zero=False):
    """The intrinsic of one tile (see the module docstring) for ``rows`` rows and ``blocks`` blocks of 16
    columns. ``masked`` (float, one block): the first ``ncols`` < 16 columns only, one more argument:

        f(acc, j, stride, W, off, x, xo, kstride, nk, wstride, ncols)

    the columns past them neither read (in acc or W: a row's tail at the end of its array) nor written (masked
    loads and stores; the last columns of a product whose width is not a multiple of 16 ran one by one, ~13x
    slower, 64 x 576 @ 576 x 148 282 against 111 us for its first 144 columns).

    ``dequant`` ("add" or "set", int8 only): the int32 sums never leave the registers; the tile takes three more
    arguments and writes floats:

        f(out, j, stride, W, off, x, xo, kstride, nk, wstride, neg, scale, sa)
        sums start at neg[j + c] (int32); out[r * stride + j + c] (float32) += (or =) (sa[r] * scale[j + c]) * sums

    (int8_product and int8_rows: a pass over the sums to start them and another to scale them cost ~0.9 us a step
    at H=512, where R's 1 MiB evicts them from the L2 every step).

    ``zero`` (float): acc[...] = the sums, from zero, without reading acc first (a product into a buffer, not
    added to it: no pass to clear the buffer and no read of it, ~13 MiB each for an LSTM's projection at T=100
    B=32 H=256)."""
    assert kind == "float" or blocks == 4, "the reduced kinds read whole column groups"
    assert not zero or (kind == "float" and dequant is None)
    assert dequant in (None, "add", "set") and (dequant is None or kind == "int8")
    assert not masked or (kind == "float" and blocks == 1 and dequant is None)

    def typer(*arg_types):
        return types.void(*arg_types), codegen

    def codegen(context, builder, sig, args):
        i32, i64 = ir.IntType(32), ir.IntType(64)
        f32x16 = ir.VectorType(ir.FloatType(), 16)
        # the float kinds compute in x's dtype: the float64 executor compiles these too
        fvec = ir.VectorType(context.get_value_type(sig.args[5].dtype), 16) if kind != "int8" else None
        vec = _I32x16 if kind == "int8" else fvec
        block_bytes = 64 if kind != "float" else 16 * context.get_abi_sizeof(fvec.element)
        acc_a = context.make_array(sig.args[0])(context, builder, args[0])
        w_a = context.make_array(sig.args[3])(context, builder, args[3])
        x_a = context.make_array(sig.args[5])(context, builder, args[5])
        j, stride, off, xo, kstride, nk, wstride = args[1], args[2], args[4], args[6], args[7], args[8], args[9]
        out_vec = f32x16 if dequant else vec
        if masked:
            i64x16 = ir.VectorType(i64, 16)
            limit = builder.insert_element(ir.Constant(i64x16, ir.Undefined), args[10], ir.Constant(i32, 0))
            limit = builder.shuffle_vector(limit, ir.Constant(i64x16, ir.Undefined), ir.Constant(_I32x16, [0] * 16))
            mask = builder.icmp_unsigned("<", ir.Constant(i64x16, list(range(16))), limit)
            suffix = "v16f32" if fvec.element == ir.FloatType() else "v16f64"
            bool16 = ir.VectorType(ir.IntType(1), 16)
            masked_load = builder.module.declare_intrinsic(
                f"llvm.masked.load.{suffix}.p0", fnty=ir.FunctionType(fvec, [fvec.as_pointer(), i32, bool16, fvec]))
            masked_store = builder.module.declare_intrinsic(
                f"llvm.masked.store.{suffix}.p0",
                fnty=ir.FunctionType(ir.VoidType(), [fvec, fvec.as_pointer(), i32, bool16]))

        def load(ptr, align):
            if masked:
                return builder.call(masked_load, [ptr, ir.Constant(i32, align), mask, ir.Constant(fvec, None)])
            return builder.load(ptr, align=align)

        def store(value, ptr):
            if masked:
                builder.call(masked_store, [value, ptr, ir.Constant(i32, 4), mask])
            else:
                builder.store(value, ptr, align=4)
        ptrs = [[builder.bitcast(builder.gep(acc_a.data, [builder.add(builder.add(
            builder.mul(ir.Constant(i64, r), stride), j), ir.Constant(i64, 16 * b))]), out_vec.as_pointer())
            for b in range(blocks)] for r in range(rows)]
        slots = [[cgutils.alloca_once(builder, vec) for b in range(blocks)] for r in range(rows)]
        if dequant:
            neg_a, scale_a, sa_a = (context.make_array(sig.args[k])(context, builder, args[k])
                                    for k in (10, 11, 12))

            def column_vec(arr, ty, b):
                at = builder.gep(arr.data, [builder.add(j, ir.Constant(i64, 16 * b))])
                return builder.load(builder.bitcast(at, ty.as_pointer()), align=4)
            start = [column_vec(neg_a, _I32x16, b) for b in range(blocks)]
        for r in range(rows):
            for b in range(blocks):
                builder.store(start[b] if dequant else ir.Constant(vec, None) if zero else load(ptrs[r][b], 4),
                              slots[r][b])
        base = builder.add(builder.ptrtoint(w_a.data, i64), off)
        splat = ir.Constant(_I32x16, [0] * 16)

        def broadcast(value, ty):
            v = builder.insert_element(ir.Constant(ty, ir.Undefined), value, ir.Constant(i32, 0))
            return builder.shuffle_vector(v, ir.Constant(ty, ir.Undefined), splat)

        def fma(s, a, b):              # contract: one FMA where the CPU has it
            builder.store(builder.fadd(builder.load(s), builder.fmul(a, b, flags=["contract"]),
                                       flags=["contract"]), s)

        def step(kk, sums):
            """One step of K (one k, or a pair or quad of rows of W) into the sums ``sums``."""
            at_w = builder.add(base, builder.mul(kk, wstride))
            wty = fvec if kind == "float" else _I32x16
            ws = [load(builder.inttoptr(builder.add(at_w, ir.Constant(i64, block_bytes * b)), wty.as_pointer()), 1)
                  for b in range(blocks)]
            if kind == "bf16":
                lo = [builder.bitcast(builder.shl(w, ir.Constant(_I32x16, [16] * 16)), f32x16) for w in ws]
                hi = [builder.bitcast(builder.and_(w, ir.Constant(_I32x16, [-65536] * 16)), f32x16) for w in ws]
                if fvec != f32x16:
                    lo = [builder.fpext(v, fvec) for v in lo]
                    hi = [builder.fpext(v, fvec) for v in hi]
            for r in range(rows):
                at = builder.add(xo, builder.mul(ir.Constant(i64, r), kstride))
                if kind == "float":
                    xs = broadcast(builder.load(builder.gep(x_a.data, [builder.add(at, kk)])), fvec)
                    for b in range(blocks):
                        fma(sums[r][b], xs, ws[b])
                    continue
                if kind == "bf16":
                    at = builder.add(at, builder.mul(kk, ir.Constant(i64, 2)))
                    x0 = broadcast(builder.load(builder.gep(x_a.data, [at])), fvec)
                    x1 = broadcast(builder.load(builder.gep(x_a.data, [builder.add(at, ir.Constant(i64, 1))])),
                                   fvec)
                    for b in range(blocks):
                        fma(sums[r][b], x0, lo[b])
                        fma(sums[r][b], x1, hi[b])
                    continue
                xs = broadcast(builder.load(builder.gep(x_a.data, [builder.add(at, kk)])), _I32x16)
                for b in range(blocks):
                    builder.store(_int8_madd(builder, builder.load(sums[r][b]), xs, ws[b]), sums[r][b])
        if rows > 1:
            with cgutils.for_range(builder, nk) as loop:
                step(loop.index, slots)
        else:
            # one row has only ``blocks`` chains of dependent sums: a second stream over the second half of K
            # doubles them, which the core overlaps (~15% at H=256)
            second = [[cgutils.alloca_once_value(builder, ir.Constant(vec, None)) for b in range(blocks)]]
            half = builder.udiv(nk, ir.Constant(i64, 2))
            with cgutils.for_range(builder, half) as loop:
                step(loop.index, slots)
                step(builder.add(loop.index, half), second)
            with builder.if_then(builder.icmp_unsigned("!=", builder.add(half, half), nk)):
                step(builder.sub(nk, ir.Constant(i64, 1)), slots)
            for b in range(blocks):
                add = builder.add if kind == "int8" else builder.fadd
                builder.store(add(builder.load(slots[0][b]), builder.load(second[0][b])), slots[0][b])
        if dequant:
            scales = [column_vec(scale_a, f32x16, b) for b in range(blocks)]
            for r in range(rows):
                sa = broadcast(builder.load(builder.gep(sa_a.data, [ir.Constant(i64, r)])), f32x16)
                for b in range(blocks):
                    m, v = builder.fmul(sa, scales[b]), builder.sitofp(builder.load(slots[r][b]), f32x16)
                    to = builder.load(ptrs[r][b], align=4) if dequant == "add" else ir.Constant(f32x16, [-0.0] * 16)
                    builder.store(_scaled_add(builder, m, v, to), ptrs[r][b], align=4)
            return context.get_dummy_value()
        for r in range(rows):
            for b in range(blocks):
                store(builder.load(slots[r][b]), ptrs[r][b])
        return context.get_dummy_value()
    if masked:
        def make(typingctx, acc, j, stride, W, off, x, xo, kstride, nk, wstride, ncols):
            return typer(acc, j, stride, W, off, x, xo, kstride, nk, wstride, ncols)
    elif dequant:
        def make(typingctx, out, j, stride, W, off, x, xo, kstride, nk, wstride, neg, scale, sa):
            return typer(out, j, stride, W, off, x, xo, kstride, nk, wstride, neg, scale, sa)
    else:
        def make(typingctx, acc, j, stride, W, off, x, xo, kstride, nk, wstride):
            return typer(acc, j, stride, W, off, x, xo, kstride, nk, wstride)
    make.__name__ = (f"_{kind}_tile{rows}x{blocks}" + (f"_{dequant}" if dequant else "")
                     + ("_masked" if masked else "") + ("_zero" if zero else ""))
    return intrinsic(make)


def dual_tile(kind="float"):
    """The intrinsic of a batch-1 recurrent step that also projects four rows of the input, a slice of K at a time
    (engine/ops/lstm_fast.py, lstm_direction_pipelined), one column group (four blocks):

        f(g, j, R, roff, h, nk, acc, aj, astride, W, woff, X, xo, xstride, k0, nb, wstride)
        g[j + c] += sum over kk < nk of h[kk] . R[step kk]            (exactly as the one-row tile: two streams of
                                                                     sums over the halves of K, the same order)
        acc[aj + r * astride + c] += sum over kk < nb of X[xo + r * xstride + k0 + kk] . W[step k0 + kk]   (r < 4,
                                                                     in the order of kk, as the 4-row tile)

    for c < 64; R's and W's step kk at byte ``off + kk * wstride``. The recurrent product streams R from the cache
    while the projection's multiply-adds, which the one-row product leaves idle, run between its loads: one loop
    takes a step of each of R's two streams and one of W's (the rest of either after it; four of R's to one of W's
    was slower, T=100 one thread: H=128 372-394 against 371-375 us).

    ``kind="int8"`` (reduced_kernels.lstm_int8_pipelined): h and X are int32 arrays of u8 quads, R and W int8 column
    groups, a step is a quad; acc is int32 (the projection's exact sums, kept between the steps that share a
    block); R's sums start at neg[j + c] and are scaled into g in registers, as tile_product's dequant "add":
    three more arguments, neg, scale, sa (g[j + c] += (sa[0] * scale[j + c]) * sums)."""
    blocks = 4
    assert kind in ("float", "int8")

    def typer(*arg_types):
        return types.void(*arg_types), codegen

    def codegen(context, builder, sig, args):
        i32, i64 = ir.IntType(32), ir.IntType(64)
        f32x16 = ir.VectorType(ir.FloatType(), 16)
        fvec = _I32x16 if kind == "int8" else ir.VectorType(context.get_value_type(sig.args[4].dtype), 16)
        block_bytes = 64 if kind == "int8" else 16 * context.get_abi_sizeof(fvec.element)
        (g_v, j, R_v, roff, h_v, nk, acc_v, aj, astride, W_v, woff, X_v, xo, xstride, k0, nb, wstride) = args[:17]
        g_a = context.make_array(sig.args[0])(context, builder, g_v)
        r_a = context.make_array(sig.args[2])(context, builder, R_v)
        h_a = context.make_array(sig.args[4])(context, builder, h_v)
        acc_a = context.make_array(sig.args[6])(context, builder, acc_v)
        w_a = context.make_array(sig.args[9])(context, builder, W_v)
        x_a = context.make_array(sig.args[11])(context, builder, X_v)
        splat = ir.Constant(_I32x16, [0] * 16)

        def vptr(base, index, ty=fvec):
            return builder.bitcast(builder.gep(base, [index]), ty.as_pointer())

        gvec = f32x16 if kind == "int8" else fvec
        gp = [vptr(g_a.data, builder.add(j, ir.Constant(i64, 16 * b)), gvec) for b in range(blocks)]
        ap = [[vptr(acc_a.data, builder.add(builder.add(aj, builder.mul(ir.Constant(i64, r), astride)),
                                            ir.Constant(i64, 16 * b))) for b in range(blocks)]
              for r in range(4)]
        if kind == "int8":
            neg_a, scale_a, sa_a = (context.make_array(sig.args[k])(context, builder, args[k]) for k in (17, 18, 19))
            starts = [builder.load(vptr(neg_a.data, builder.add(j, ir.Constant(i64, 16 * b))), align=4)
                      for b in range(blocks)]
        else:
            starts = [builder.load(p, align=4) for p in gp]
        first = [cgutils.alloca_once_value(builder, v) for v in starts]
        second = [cgutils.alloca_once_value(builder, ir.Constant(fvec, None)) for _ in gp]
        proj = [[cgutils.alloca_once_value(builder, builder.load(p, align=4)) for p in row] for row in ap]
        rbase = builder.add(builder.ptrtoint(r_a.data, i64), roff)
        wbase = builder.add(builder.ptrtoint(w_a.data, i64), woff)

        def broadcast(value, ty=fvec):
            v = builder.insert_element(ir.Constant(ty, ir.Undefined), value, ir.Constant(i32, 0))
            return builder.shuffle_vector(v, ir.Constant(ty, ir.Undefined), splat)

        def broadcast_f(value):
            return broadcast(value, f32x16)

        def fma(s, a, b):
            if kind == "int8":           # a quad of u8 (a) by a quad of int8 (b) into each int32 lane
                builder.store(_int8_madd(builder, builder.load(s), a, b), s)
                return
            builder.store(builder.fadd(builder.load(s), builder.fmul(a, b, flags=["contract"]),
                                       flags=["contract"]), s)

        def weights(base, kk):
            at = builder.add(base, builder.mul(kk, wstride))
            return [builder.load(builder.inttoptr(builder.add(at, ir.Constant(i64, block_bytes * b)),
                                                  fvec.as_pointer()), align=1) for b in range(blocks)]

        def rec_step(kk, sums):
            ws = weights(rbase, kk)
            xs = broadcast(builder.load(builder.gep(h_a.data, [kk])))
            for b in range(blocks):
                fma(sums[b], xs, ws[b])

        def proj_step(kk):
            k = builder.add(k0, kk)
            ws = weights(wbase, k)
            for r in range(4):
                at = builder.add(builder.add(xo, builder.mul(ir.Constant(i64, r), xstride)), k)
                xs = broadcast(builder.load(builder.gep(x_a.data, [at])))
                for b in range(blocks):
                    fma(proj[r][b], xs, ws[b])

        half = builder.udiv(nk, ir.Constant(i64, 2))
        m = builder.select(builder.icmp_unsigned("<", nb, half), nb, half)
        with cgutils.for_range(builder, m) as loop:           # two steps of R, one of W
            i = loop.index
            rec_step(i, first)
            rec_step(builder.add(i, half), second)
            proj_step(i)
        done = m
        with cgutils.for_range(builder, builder.sub(half, done)) as loop:      # the rest of R's halves
            kk = builder.add(done, loop.index)
            rec_step(kk, first)
            rec_step(builder.add(kk, half), second)
        with builder.if_then(builder.icmp_unsigned("!=", builder.add(half, half), nk)):
            rec_step(builder.sub(nk, ir.Constant(i64, 1)), first)
        with cgutils.for_range(builder, builder.sub(nb, m)) as loop:            # the rest of W's slice
            proj_step(builder.add(m, loop.index))
        if kind == "int8":
            sa = broadcast_f(builder.load(sa_a.data))
            for b in range(blocks):
                total = builder.add(builder.load(first[b]), builder.load(second[b]))
                scale = builder.load(vptr(scale_a.data, builder.add(j, ir.Constant(i64, 16 * b)), f32x16),
                                     align=4)
                v = _scaled_add(builder, builder.fmul(sa, scale), builder.sitofp(total, f32x16),
                                builder.load(gp[b], align=4))
                builder.store(v, gp[b], align=4)
        else:
            for b in range(blocks):
                builder.store(builder.fadd(builder.load(first[b]), builder.load(second[b])), gp[b], align=4)
        for r in range(4):
            for b in range(blocks):
                builder.store(builder.load(proj[r][b]), ap[r][b], align=4)
        return context.get_dummy_value()

    if kind == "int8":
        def make(typingctx, g, j, R, roff, h, nk, acc, aj, astride, W, woff, X, xo, xstride, k0, nb, wstride, neg,
                 scale, sa):
            return typer(g, j, R, roff, h, nk, acc, aj, astride, W, woff, X, xo, xstride, k0, nb, wstride, neg,
                         scale, sa)
    else:
        def make(typingctx, g, j, R, roff, h, nk, acc, aj, astride, W, woff, X, xo, xstride, k0, nb, wstride):
            return typer(g, j, R, roff, h, nk, acc, aj, astride, W, woff, X, xo, xstride, k0, nb, wstride)
    make.__name__ = f"_{kind}_dual_tile"
    return intrinsic(make)


def _transpose16(builder, rows):
    """The 16 x 16 matrix whose rows are the 16-lane vectors ``rows``, transposed: four passes of 16 two-vector
    shuffles (pass b swaps the b x b blocks off the diagonal of each 2b x 2b block)."""
    rows = list(rows)
    i32 = ir.IntType(32)
    for b in (8, 4, 2, 1):
        lo = ir.Constant(ir.VectorType(i32, 16), [k if not k & b else 16 + k - b for k in range(16)])
        hi = ir.Constant(ir.VectorType(i32, 16), [k + b if not k & b else 16 + k for k in range(16)])
        out = list(rows)
        for i in range(16):
            if i & b:
                continue
            out[i] = builder.shuffle_vector(rows[i], rows[i + b], lo)
            out[i + b] = builder.shuffle_vector(rows[i], rows[i + b], hi)
        rows = out
    return rows


@intrinsic
def transpose16(typingctx, src, soff, sstride, dst, doff, dstride):
    """dst[doff + c * dstride + r] = src[soff + r * sstride + c] for r, c < 16: a 16 x 16 block copied transposed
    through registers (_transpose16), 16 loads and 16 stores of 16 lanes; src and dst of the same float dtype.
    A convolution's sums, pixels x channels, written channels first (vision_kernels.window_product): element by
    element it cost about as much as the product itself for 16 channels in, 32 out."""
    def codegen(context, builder, sig, args):
        s_a = context.make_array(sig.args[0])(context, builder, args[0])
        d_a = context.make_array(sig.args[3])(context, builder, args[3])
        vec = ir.VectorType(context.get_value_type(sig.args[0].dtype), 16)
        i64 = ir.IntType(64)

        def at(base, off, stride, k):
            index = builder.add(off, builder.mul(ir.Constant(i64, k), stride))
            return builder.bitcast(builder.gep(base, [index]), vec.as_pointer())
        rows = [builder.load(at(s_a.data, args[1], args[2], r), align=4) for r in range(16)]
        for c, v in enumerate(_transpose16(builder, rows)):
            builder.store(v, at(d_a.data, args[4], args[5], c), align=4)
        return context.get_dummy_value()
    return types.void(src, soff, sstride, dst, doff, dstride), codegen
