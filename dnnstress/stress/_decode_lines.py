"""Q-2 decoding a cache line at a time: explicit vector loops, optionally streamed (numba).

Written as a numba loop, ``lo[j] + (code + 0.5) * step[j]`` vectorised poorly (the
codes widened a lane at a time): into a cache-resident 1024 x 4096 float32 output it ran
at 0.60 ms where faiss's SQ8 decode takes 0.39.  These intrinsics emit the loop
themselves, one vector per 64-byte line of the output: the codes loaded as one vector,
converted, scaled and offset by the same IEEE operations in the same order as
:func:`dnnstress.stress._cpu_kernels._centre` (no FMA), and one store, at 0.38 ms.

A decoded matrix is 4 - 8x the size of its codes, and a plain store first reads the
line it writes (a read for ownership), so a large output crosses the memory bus twice.
:func:`stream_lines` stores past the caches instead (non-temporal stores): into an
existing 16384 x 4096 float32 array (256 MiB) 8 ms against 16 ms for plain stores and
faiss alike; from 96 MiB up it was 1.6x faster, at 64 MiB a tie.  Below that an output
stays in the cache and plain stores win.  A streamed store into a line the cache holds
costs more than a plain one, and fresh pages arrive zeroed in the cache (41 against 26
ms into a new array), so a streamed output's pages are touched first
(:func:`touch_pages`); a streaming kernel ends with :func:`store_fence`, as streamed
stores are not ordered with other memory operations until then.  Which decodes stream
is decided in ``_cpu_kernels._decode_output``.

numba's cache of the kernels that inline these is keyed on their own file: after a
change here, touch ``_cpu_kernels.py`` (or clear its ``__pycache__``) when developing.
"""

from __future__ import annotations

import llvmlite.binding
import numba
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

LINE = 64  # bytes of a cache line, the unit of a vector store
PAGE = 4096  # bytes of the smallest memory page, the unit of a page fault

# Whether this is an x86 CPU, the only kind the streamed stores were measured on.
X86 = llvmlite.binding.get_process_triple().startswith(("x86_64", "i386", "i686"))


@intrinsic
def line_span(typingctx, out_row):
    """``(first, last)``: the elements ``[first, last)`` of the 1-D ``out_row`` that fill
    whole, aligned cache lines (``first`` elements before the first line boundary);
    none, ``(n, n)``, in a row whose elements are not aligned to their size."""
    if not (isinstance(out_row, types.Array) and out_row.ndim == 1):
        raise TypeError("line_span takes a 1-D array")
    signature = types.UniTuple(types.intp, 2)(out_row)

    def codegen(context, builder, signature, args):
        row = context.make_array(signature.args[0])(context, builder, args[0])
        intp = context.get_value_type(types.intp)
        size = context.get_abi_sizeof(context.get_data_type(signature.args[0].dtype))
        n = builder.extract_value(row.shape, 0)
        address = builder.ptrtoint(row.data, intp)
        to_boundary = builder.and_(builder.neg(address), ir.Constant(intp, LINE - 1))
        first = builder.udiv(to_boundary, ir.Constant(intp, size))
        misaligned = builder.icmp_unsigned("!=", builder.and_(
            address, ir.Constant(intp, size - 1)), ir.Constant(intp, 0))
        first = builder.select(builder.or_(misaligned, builder.icmp_signed("<", n, first)),
                               n, first)
        per_line = ir.Constant(intp, LINE // size)
        whole = builder.mul(builder.sdiv(builder.sub(n, first), per_line), per_line)
        return context.make_tuple(builder, signature.return_type,
                                  [first, builder.add(first, whole)])

    return signature, codegen


def _line_signature(codes_row, lo, step, half, out_row):
    arrays = (codes_row, lo, step, out_row)
    if not all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
               for a in arrays):
        raise TypeError("the line loops take C-contiguous 1-D arrays")
    if not (isinstance(codes_row.dtype, types.Integer) and not codes_row.dtype.signed
            and isinstance(half, types.Float)
            and lo.dtype == step.dtype == out_row.dtype == half):
        raise TypeError("the line loops take unsigned codes, and lo, step, half and the "
                        "output of one float type")
    return types.void(codes_row, lo, step, half, out_row, types.intp, types.intp)


def _line_codegen(streamed):
    """The loop over lines ``[first, last)``, its stores non-temporal if ``streamed``."""

    def codegen(context, builder, signature, args):
        codes, lows, steps, out = (context.make_array(signature.args[k])(
            context, builder, args[k]) for k in (0, 1, 2, 4))
        half, first, last = args[3], args[5], args[6]
        float_type = context.get_data_type(signature.args[3])
        size = context.get_abi_sizeof(float_type)
        lanes = LINE // size
        vector = ir.VectorType(float_type, lanes)
        code_type = context.get_data_type(signature.args[0].dtype)
        code_size = context.get_abi_sizeof(code_type)
        empty = ir.Constant(vector, ir.Undefined)
        halves = builder.shuffle_vector(
            builder.insert_element(empty, half, ir.Constant(ir.IntType(32), 0)),
            empty, ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))
        nontemporal = builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)])

        def load(array, j, kind, align):
            pointer = builder.bitcast(builder.gep(array.data, [j]), kind.as_pointer())
            return builder.load(pointer, align=align)

        with cgutils.for_range_slice(builder, first, last,
                                     ir.Constant(first.type, lanes)) as (j, _):
            value = load(codes, j, ir.VectorType(code_type, lanes), code_size)
            value = builder.fadd(builder.uitofp(value, vector), halves)
            value = builder.fmul(value, load(steps, j, vector, size))
            value = builder.fadd(load(lows, j, vector, size), value)
            target = builder.bitcast(builder.gep(out.data, [j]), vector.as_pointer())
            store = builder.store(value, target, align=LINE)
            if streamed:
                store.set_metadata("nontemporal", nontemporal)
        return context.get_dummy_value()

    return codegen


@intrinsic
def store_lines(typingctx, codes_row, lo, step, half, out_row, first, last):
    """``out_row[j] = lo[j] + (float(codes_row[j]) + half) * step[j]`` for ``j`` in
    ``[first, last)`` (whole lines, from :func:`line_span`), a vector store per line.
    ``lo``, ``step``, ``half`` and ``out_row`` share one float type; the codes are
    unsigned integers."""
    return _line_signature(codes_row, lo, step, half, out_row), _line_codegen(False)


@intrinsic
def stream_lines(typingctx, codes_row, lo, step, half, out_row, first, last):
    """:func:`store_lines` with non-temporal stores: follow with :func:`store_fence`."""
    return _line_signature(codes_row, lo, step, half, out_row), _line_codegen(True)


@intrinsic
def store_fence(typingctx):
    """Order the streamed stores before every later memory operation: ``sfence`` on
    x86, the fence made for them (LLVM may lower a full fence to a locked instruction,
    whose ordering of streamed stores is less plainly documented); a full fence
    elsewhere."""

    def codegen(context, builder, signature, args):
        if X86:
            sfence = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse.sfence")
            builder.call(sfence, [])
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


@numba.njit(inline="always")
def touch_pages(flat, start, stop):
    """Write a zero every ``PAGE`` bytes of ``flat[start:stop]``, on a grid from
    ``flat``'s start, so that fresh pages fault in, zeroed, before the streamed stores
    rather than under them: every page but, where ``flat`` starts inside a page, perhaps
    its last one.  Costs 0.5 ms on 256 MiB already in memory."""
    stride = PAGE // flat.itemsize
    for k in range((start + stride - 1) // stride * stride, stop, stride):
        flat[k] = 0
