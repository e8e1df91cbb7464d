// Uniform scalar quantization (Q-1 / Q-2, paper Sec. 2.2) on the GPU.
//
// The specification is dnnstress/stress/_uniform.py; these kernels must match it BIT FOR
// BIT (tests compare with array_equal).  The parameters arrive already cast to the
// input's type T (float or double) and all the arithmetic runs in T:
//
//     t     = (x - lo) / safe_step          IEEE division (safe_step = +inf on constant dims)
//     code  = clip(ceil(t) - 1, 0, h - 1)
//     value = lo + (code + 0.5) * step      two roundings: never a fused multiply-add
//
// Exactness is built in, not left to flags: every floating-point operation is one PTX
// instruction with an explicit round-to-nearest modifier and no flush-to-zero (see Ieee
// below), which no compiler option can contract into an FMA, approximate or flush.
// dnnstress._cuda also compiles with --fmad=false and without --use_fast_math as a
// second guard.
//
// Layout: X is row-major (n_rows, n_cols) and C-contiguous.  A thread owns V adjacent
// columns, loads their parameters once, and walks down the rows, so the column index
// needs no per-element modulo.  V * sizeof(T) = 16 bytes where the row length and the
// pointers allow it (the wrapper picks V), giving one 16-byte load per thread per row;
// ROWS rows are loaded before any is computed, keeping several loads in flight.
//
// Compiles under NVRTC (no headers) and nvcc alike; the extern "C" entry points at the
// end are every variant dnnstress._cuda launches.

#define DNNSTRESS_THREADS 256
#define DNNSTRESS_ROWS 4

namespace dnnstress {

template <typename T, int V>
struct alignas(sizeof(T) * V) Vec {
    T v[V];
};

// IEEE arithmetic in T, one PTX instruction per operation.  An explicit .rn rounding
// modifier forbids contraction into an FMA (PTX ISA, add/mul), and writing no .ftz keeps
// float32 subnormals: CuPy appends -ftz=true to every NVRTC compilation, which would
// otherwise flush them to zero in float code and break equality with numpy.
template <typename T>
struct Ieee;

template <>
struct Ieee<float> {
    static __device__ __forceinline__ float sub(float a, float b)
    {
        float r;
        asm("sub.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
        return r;
    }
    static __device__ __forceinline__ float add(float a, float b)
    {
        float r;
        asm("add.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
        return r;
    }
    static __device__ __forceinline__ float mul(float a, float b)
    {
        float r;
        asm("mul.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
        return r;
    }
    static __device__ __forceinline__ float div(float a, float b)
    {
        float r;
        asm("div.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
        return r;
    }
    static __device__ __forceinline__ float ceil(float a)
    {
        float r;
        asm("cvt.rpi.f32.f32 %0, %1;" : "=f"(r) : "f"(a));
        return r;
    }
    static __device__ __forceinline__ float clip(float a, float top)
    {
        float r;
        asm("max.f32 %0, %1, 0f00000000;\n\tmin.f32 %0, %0, %2;" : "=f"(r) : "f"(a), "f"(top));
        return r;
    }
};

template <>
struct Ieee<double> {
    static __device__ __forceinline__ double sub(double a, double b)
    {
        double r;
        asm("sub.rn.f64 %0, %1, %2;" : "=d"(r) : "d"(a), "d"(b));
        return r;
    }
    static __device__ __forceinline__ double add(double a, double b)
    {
        double r;
        asm("add.rn.f64 %0, %1, %2;" : "=d"(r) : "d"(a), "d"(b));
        return r;
    }
    static __device__ __forceinline__ double mul(double a, double b)
    {
        double r;
        asm("mul.rn.f64 %0, %1, %2;" : "=d"(r) : "d"(a), "d"(b));
        return r;
    }
    static __device__ __forceinline__ double div(double a, double b)
    {
        double r;
        asm("div.rn.f64 %0, %1, %2;" : "=d"(r) : "d"(a), "d"(b));
        return r;
    }
    static __device__ __forceinline__ double ceil(double a)
    {
        double r;
        asm("cvt.rpi.f64.f64 %0, %1;" : "=d"(r) : "d"(a));
        return r;
    }
    static __device__ __forceinline__ double clip(double a, double top)
    {
        double r;
        asm("max.f64 %0, %1, 0d0000000000000000;\n\tmin.f64 %0, %0, %2;"
            : "=d"(r) : "d"(a), "d"(top));
        return r;
    }
};

// Code, as a T holding an integer: clip(ceil((x - lo) / safe_step) - 1, 0, top).
// Inputs are finite (validated upstream), so PTX min/max agree with numpy's clip.
template <typename T>
__device__ __forceinline__ T code_of(T x, T lo, T safe_step, T top)
{
    typedef Ieee<T> M;
    return M::clip(M::sub(M::ceil(M::div(M::sub(x, lo), safe_step)), T(1)), top);
}

// Bin centre lo + (code + 0.5) * step with separate roundings.
template <typename T>
__device__ __forceinline__ T centre_of(T code, T lo, T step)
{
    typedef Ieee<T> M;
    return M::add(lo, M::mul(M::add(code, T(0.5)), step));
}

// The per-column parameters a thread keeps in registers for its V columns.
template <typename T, int V>
struct Params {
    T lo[V], step[V], safe_step[V];

    __device__ __forceinline__ Params(const T* __restrict__ lo_, const T* __restrict__ step_,
                                      const T* __restrict__ safe_step_, long long col)
    {
#pragma unroll
        for (int k = 0; k < V; ++k) {
            lo[k] = __ldg(lo_ + col + k);
            step[k] = __ldg(step_ + col + k);
            safe_step[k] = __ldg(safe_step_ + col + k);
        }
    }
};

// First of the V columns this thread owns, or -1 past the end of a row.
// Grid: x over groups of V columns, y (and threadIdx.y) over rows.
template <int V>
__device__ __forceinline__ long long first_column(long long n_cols)
{
    long long col = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * V;
    return col < n_cols ? col : -1;
}

// Walk the rows owned by this thread, ROWS at a time, at columns [col, col + V);
// op maps one input vector to one output vector.
template <typename In, typename Out, int V, typename Op>
__device__ __forceinline__ void for_rows(const In* __restrict__ x, Out* __restrict__ out,
                                         long long n_rows, long long n_cols, long long col,
                                         const Op& op)
{
    long long stride = (long long)gridDim.y * blockDim.y;
    for (long long row = (long long)blockIdx.y * blockDim.y + threadIdx.y; row < n_rows;
         row += DNNSTRESS_ROWS * stride) {
        Vec<In, V> in[DNNSTRESS_ROWS];
#pragma unroll
        for (int r = 0; r < DNNSTRESS_ROWS; ++r) {
            long long i = row + r * stride;
            if (i < n_rows) {
                in[r] = *reinterpret_cast<const Vec<In, V>*>(x + i * n_cols + col);
            }
        }
#pragma unroll
        for (int r = 0; r < DNNSTRESS_ROWS; ++r) {
            long long i = row + r * stride;
            if (i < n_rows) {
                *reinterpret_cast<Vec<Out, V>*>(out + i * n_cols + col) = op(in[r]);
            }
        }
    }
}

template <typename T, int V>
struct ReconstructOp {
    Params<T, V> p;
    T top;

    __device__ __forceinline__ Vec<T, V> operator()(const Vec<T, V>& in) const
    {
        Vec<T, V> res;
#pragma unroll
        for (int k = 0; k < V; ++k) {
            T code = code_of(in.v[k], p.lo[k], p.safe_step[k], top);
            res.v[k] = centre_of(code, p.lo[k], p.step[k]);
        }
        return res;
    }
};

template <typename T, typename C, int V>
struct EncodeOp {
    Params<T, V> p;
    T top;

    __device__ __forceinline__ Vec<C, V> operator()(const Vec<T, V>& in) const
    {
        Vec<C, V> res;
#pragma unroll
        for (int k = 0; k < V; ++k) {
            res.v[k] = (C)code_of(in.v[k], p.lo[k], p.safe_step[k], top);  // exact integer
        }
        return res;
    }
};

template <typename T, int V>
__device__ __forceinline__ void reconstruct(const T* __restrict__ x, T* __restrict__ out,
                                            const T* __restrict__ lo,
                                            const T* __restrict__ step,
                                            const T* __restrict__ safe_step,
                                            long long n_rows, long long n_cols, int n_levels)
{
    long long col = first_column<V>(n_cols);
    if (col < 0) {
        return;
    }
    ReconstructOp<T, V> op{Params<T, V>(lo, step, safe_step, col), (T)(n_levels - 1)};
    for_rows<T, T, V>(x, out, n_rows, n_cols, col, op);
}

template <typename T, typename C, int V>
__device__ __forceinline__ void encode(const T* __restrict__ x, C* __restrict__ out,
                                       const T* __restrict__ lo, const T* __restrict__ step,
                                       const T* __restrict__ safe_step,
                                       long long n_rows, long long n_cols, int n_levels)
{
    long long col = first_column<V>(n_cols);
    if (col < 0) {
        return;
    }
    EncodeOp<T, C, V> op{Params<T, V>(lo, step, safe_step, col), (T)(n_levels - 1)};
    for_rows<T, C, V>(x, out, n_rows, n_cols, col, op);
}

}  // namespace dnnstress

// Entry points: quantize_reconstruct_<input>_v<V>, quantize_encode_<input>_<code>_v<V>.
// Arguments: x, out, lo, step, safe_step (each n_cols values of x's type), n_rows, n_cols,
// n_levels.
#define DNNSTRESS_RECONSTRUCT(NAME, T, V)                                                   \
    extern "C" __global__ void __launch_bounds__(DNNSTRESS_THREADS)                         \
    NAME(const T* __restrict__ x, T* __restrict__ out, const T* __restrict__ lo,            \
         const T* __restrict__ step, const T* __restrict__ safe_step,                       \
         long long n_rows, long long n_cols, int n_levels)                                  \
    {                                                                                       \
        dnnstress::reconstruct<T, V>(x, out, lo, step, safe_step, n_rows, n_cols, n_levels); \
    }

#define DNNSTRESS_ENCODE(NAME, T, C, V)                                                     \
    extern "C" __global__ void __launch_bounds__(DNNSTRESS_THREADS)                         \
    NAME(const T* __restrict__ x, C* __restrict__ out, const T* __restrict__ lo,            \
         const T* __restrict__ step, const T* __restrict__ safe_step,                       \
         long long n_rows, long long n_cols, int n_levels)                                  \
    {                                                                                       \
        dnnstress::encode<T, C, V>(x, out, lo, step, safe_step, n_rows, n_cols, n_levels);   \
    }

DNNSTRESS_RECONSTRUCT(quantize_reconstruct_f32_v1, float, 1)
DNNSTRESS_RECONSTRUCT(quantize_reconstruct_f32_v2, float, 2)
DNNSTRESS_RECONSTRUCT(quantize_reconstruct_f32_v4, float, 4)
DNNSTRESS_RECONSTRUCT(quantize_reconstruct_f64_v1, double, 1)
DNNSTRESS_RECONSTRUCT(quantize_reconstruct_f64_v2, double, 2)

DNNSTRESS_ENCODE(quantize_encode_f32_u8_v1, float, unsigned char, 1)
DNNSTRESS_ENCODE(quantize_encode_f32_u8_v2, float, unsigned char, 2)
DNNSTRESS_ENCODE(quantize_encode_f32_u8_v4, float, unsigned char, 4)
DNNSTRESS_ENCODE(quantize_encode_f64_u8_v1, double, unsigned char, 1)
DNNSTRESS_ENCODE(quantize_encode_f64_u8_v2, double, unsigned char, 2)
DNNSTRESS_ENCODE(quantize_encode_f32_u16_v1, float, unsigned short, 1)
DNNSTRESS_ENCODE(quantize_encode_f32_u16_v2, float, unsigned short, 2)
DNNSTRESS_ENCODE(quantize_encode_f32_u16_v4, float, unsigned short, 4)
DNNSTRESS_ENCODE(quantize_encode_f64_u16_v1, double, unsigned short, 1)
DNNSTRESS_ENCODE(quantize_encode_f64_u16_v2, double, unsigned short, 2)
