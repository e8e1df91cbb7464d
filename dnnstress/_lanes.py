"""Eight-lane vector loops over a sparse row, for the SVM's numba kernels.

The CSR kernels of :mod:`dnnstress._svm_kernels` hold a group's weights column by
column, ``columns`` (d, lanes) with one lane per label, so that a non-zero ``(j, v)`` of
a sample meets every label's weight in one row, ``columns[j]``.  Written as numba loops
over the lanes, LLVM either unrolled them into scalar operations (a constant count) or
kept the sums in memory behind run-time alias checks (a variable one): 12 cycles per
non-zero for 16 lanes.  These intrinsics emit the vector code itself: per non-zero one
vector load, and a multiply-add into registers (dots) or back to the row (axpys).
On Q-B 62's features (1 % non-zero) a 6,000-sample pass of both took 0.32 ms where the
numba loops took 0.80, and a fit's epochs 20 ms where they took 25.

Each lane's arithmetic is its own and the same whatever the lane, so a label's result
does not depend on which lane, or which group of labels, it is computed in.

numba's cache of the kernels that inline these is keyed on their own file: after a
change here, touch ``_svm_kernels.py`` (or clear its ``__pycache__``) when developing.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

LANES = 8  # float32 lanes of an AVX register; float64 takes two, still one loop


def _setup(context, builder, signature, args):
    """The four arrays (columns, indices, values, lanes) and the vector type of
    ``columns``' dtype."""
    arrays = [context.make_array(kind)(context, builder, value)
              for kind, value in zip(signature.args, args) if isinstance(kind, types.Array)]
    element = context.get_data_type(signature.args[0].dtype)
    return arrays, ir.VectorType(element, LANES)


def _lanes_at(builder, array, flat, vector):
    """A pointer to ``array.flat[flat : flat + LANES]`` as one vector."""
    return builder.bitcast(builder.gep(array.data, [flat]), vector.as_pointer())


def _row_term(context, builder, signature, arrays, base, p, vector):
    """For non-zero ``p`` (column j, value v): a pointer to ``columns[j, base : base +
    LANES]``, those lanes, and v splatted over the lanes in ``columns``' dtype."""
    columns, indices, values = arrays[:3]
    columns_type, indices_type, values_type = (signature.args[0], signature.args[4],
                                               signature.args[5])
    column = context.cast(builder, builder.load(builder.gep(indices.data, [p])),
                          indices_type.dtype, types.intp)
    value = context.cast(builder, builder.load(builder.gep(values.data, [p])),
                         values_type.dtype, columns_type.dtype)
    width = builder.extract_value(columns.shape, 1)
    pointer = _lanes_at(builder, columns, builder.add(builder.mul(column, width), base),
                        vector)
    empty = ir.Constant(vector, ir.Undefined)
    first = builder.insert_element(empty, value, ir.Constant(ir.IntType(32), 0))
    splat = builder.shuffle_vector(first, empty, ir.Constant(
        ir.VectorType(ir.IntType(32), LANES), [0] * LANES))
    return pointer, builder.load(pointer, align=_alignment(context, columns_type)), splat


def _alignment(context, array_type):
    """The vectors' alignment: their element's (rows start at any multiple of 8 lanes,
    but numpy aligns the data only to the element)."""
    return context.get_abi_sizeof(context.get_data_type(array_type.dtype))


def _fma(builder, a, b, c):
    """``a * b + c`` lane by lane, in one rounding where the CPU has FMA
    (``llvm.fmuladd``: ``llvm.fma`` would call the C library's ``fmaf`` per lane on
    one without, 15x slower)."""
    vector = a.type
    name = f"llvm.fmuladd.v{vector.count}{vector.element.intrinsic_name}"
    fma = cgutils.get_or_insert_function(builder.module,
                                         ir.FunctionType(vector, [vector] * 3), name)
    return builder.call(fma, [a, b, c])


def _signature(columns, indices, values, lanes_array):
    """The intrinsics' signature ``(columns, base, start, stop, indices, values, lanes)``
    once the array types are checked."""
    for kind in (columns, indices, values, lanes_array):
        if not isinstance(kind, types.Array) or kind.layout != "C":
            raise TypeError("the lane loops need C-contiguous arrays")
    if columns.ndim != 2 or indices.ndim != 1 or values.ndim != 1 or lanes_array.ndim != 1:
        raise TypeError("columns is 2-D, indices, values and the lanes are 1-D")
    if not (columns.dtype == lanes_array.dtype and isinstance(columns.dtype, types.Float)
            and isinstance(values.dtype, types.Float)
            and values.dtype.bitwidth <= columns.dtype.bitwidth
            and isinstance(indices.dtype, types.Integer)):
        raise TypeError("columns and the lanes share one float dtype, values are floats "
                        "no wider (cast to it) and indices integers")
    return types.void(columns, types.intp, types.intp, types.intp, indices, values,
                      lanes_array)


@intrinsic
def row_dots(typingctx, columns, base, start, stop, indices, values, dots):
    """``dots[base : base + 8] = sum_p columns[indices[p], base : base + 8] * values[p]``
    over ``p in [start, stop)``, the non-zeros of one CSR row.

    Two vector sums, of the even and the odd non-zeros, added at the end: one sum would
    wait on its own multiply-add's latency at every non-zero."""
    signature = _signature(columns, indices, values, dots)

    def codegen(context, builder, signature, args):
        arrays, vector = _setup(context, builder, signature, args)
        base, start, stop = args[1], args[2], args[3]
        sums = [cgutils.alloca_once_value(builder, ir.Constant(vector, None))
                for _ in range(2)]

        def add_term(p, total):
            _, row, value = _row_term(context, builder, signature, arrays, base, p, vector)
            builder.store(_fma(builder, row, value, builder.load(total)), total)

        one = ir.Constant(start.type, 1)
        pairs_end = builder.add(start, builder.shl(builder.ashr(builder.sub(stop, start),
                                                                one), one))
        with cgutils.for_range_slice(builder, start, pairs_end, builder.add(one, one)
                                     ) as (p, _):
            add_term(p, sums[0])
            add_term(builder.add(p, one), sums[1])
        with builder.if_then(builder.icmp_signed("<", pairs_end, stop)):
            add_term(pairs_end, sums[0])
        total = builder.fadd(builder.load(sums[0]), builder.load(sums[1]))
        builder.store(total, _lanes_at(builder, arrays[3], base, vector),
                      align=_alignment(context, signature.args[0]))
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def row_axpys(typingctx, columns, base, start, stop, indices, values, steps):
    """``columns[indices[p], base : base + 8] += steps[base : base + 8] * values[p]`` for
    ``p in [start, stop)``, the non-zeros of one CSR row (a step of 0 leaves its lane
    as it is)."""
    signature = _signature(columns, indices, values, steps)

    def codegen(context, builder, signature, args):
        arrays, vector = _setup(context, builder, signature, args)
        base, start, stop = args[1], args[2], args[3]
        align = _alignment(context, signature.args[0])
        step = builder.load(_lanes_at(builder, arrays[3], base, vector), align=align)
        with cgutils.for_range_slice(builder, start, stop, ir.Constant(start.type, 1)
                                     ) as (p, _):
            pointer, row, value = _row_term(context, builder, signature, arrays, base, p,
                                            vector)
            builder.store(_fma(builder, step, value, row), pointer, align=align)
        return context.get_dummy_value()

    return signature, codegen
