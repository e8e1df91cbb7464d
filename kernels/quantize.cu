// Uniform scalar quantization (Q-1 / Q-2, paper Sec. 2.2) on the GPU.
//
// The specification is dnnstress/stress/_uniform.py; these kernels must match it BIT FOR
// BIT (tests compare with array_equal).  The parameters arrive as the float64 values
// fitted on the host and are cast to the input's type T (float or double) here, in the
// kernel, with an explicit non-flushing conversion; all the arithmetic then runs in T:
//
//     safe_step = step > 0 ? (T)step : +inf    (decided in float64, as _uniform.safe_step)
//     t     = (x - lo) / safe_step             IEEE division
//     code  = clip(ceil(t) - 1, 0, h - 1)
//     value = lo + (code + 0.5) * step         two roundings: never a fused multiply-add
//
// Non-finite inputs are counted in the same pass (from their exponent bits): each
// thread adds its count to one device counter with one atomic, and the wrapper raises
// the CPU path's ValueError when it is not zero, so X is read once.
//
// Exactness is built in, not left to flags: every floating-point operation is one PTX
// instruction with an explicit round-to-nearest modifier and no flush-to-zero (see Ieee
// below), which no compiler option can contract into an FMA, approximate or flush.
// dnnstress._cuda also compiles with --fmad=false and without --use_fast_math as a
// second guard.  Outside device compilation (__CUDA_ARCH__ undefined: the host build
// the tests make with g++ through host_shim.cuh) each operation is the same IEEE
// operation in portable C++.
//
// Layout: X is row-major (n_rows, n_cols) and C-contiguous.  A thread owns V adjacent
// columns, loads their parameters once, and walks down the rows, so the column index
// needs no per-element modulo.  V * sizeof(T) = 16 bytes where the row length and the
// pointers allow it (the wrapper picks V), giving one 16-byte load per thread per row;
// ROWS rows are loaded before any is computed, keeping several loads in flight.
//
// Compiles under NVRTC (no headers) and nvcc alike, and with g++ after host_shim.cuh;
// the extern "C" entry points at the end are every variant dnnstress._cuda launches.

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

// sub, add, mul, div: the PTX instruction of that name, or the C++ operator OP.
#ifdef __CUDA_ARCH__
#define DNNSTRESS_IEEE_BINARY(NAME, OP, T, TYPE, REG)                                      \
    static __device__ __forceinline__ T NAME(T a, T b)                                      \
    {                                                                                       \
        T r;                                                                                \
        asm(#NAME ".rn." TYPE " %0, %1, %2;" : "=" REG(r) : REG(a), REG(b));                \
        return r;                                                                           \
    }
#else
#define DNNSTRESS_IEEE_BINARY(NAME, OP, T, TYPE, REG)                                      \
    static __device__ __forceinline__ T NAME(T a, T b) { return a OP b; }
#endif

template <>
struct Ieee<float> {
    DNNSTRESS_IEEE_BINARY(sub, -, float, "f32", "f")
    DNNSTRESS_IEEE_BINARY(add, +, float, "f32", "f")
    DNNSTRESS_IEEE_BINARY(mul, *, float, "f32", "f")
    DNNSTRESS_IEEE_BINARY(div, /, float, "f32", "f")

    static __device__ __forceinline__ float ceil(float a)
    {
#ifdef __CUDA_ARCH__
        float r;
        asm("cvt.rpi.f32.f32 %0, %1;" : "=f"(r) : "f"(a));
        return r;
#else
        return __builtin_ceilf(a);
#endif
    }
    // max(a, 0) then min(., top); as PTX max/min, a NaN operand yields the other one.
    static __device__ __forceinline__ float clip(float a, float top)
    {
#ifdef __CUDA_ARCH__
        float r;
        asm("max.f32 %0, %1, 0f00000000;\n\tmin.f32 %0, %0, %2;" : "=f"(r) : "f"(a), "f"(top));
        return r;
#else
        float r = a > 0.0f ? a : 0.0f;
        return r < top ? r : top;
#endif
    }
    // An integer-valued a in [0, 65535] as an unsigned integer (exact).
    static __device__ __forceinline__ unsigned int to_uint(float a)
    {
#ifdef __CUDA_ARCH__
        unsigned int r;
        asm("cvt.rzi.u32.f32 %0, %1;" : "=r"(r) : "f"(a));
        return r;
#else
        return (unsigned int)a;
#endif
    }
    // 1 for NaN and +-inf (all exponent bits set), 0 for every finite a.
    static __device__ __forceinline__ int not_finite(float a)
    {
        unsigned int bits;
#ifdef __CUDA_ARCH__
        asm("mov.b32 %0, %1;" : "=r"(bits) : "f"(a));
#else
        __builtin_memcpy(&bits, &a, sizeof bits);
#endif
        return (bits & 0x7f800000u) == 0x7f800000u;
    }
    // Round to nearest even, subnormals kept (cvt.rn without .ftz).
    static __device__ __forceinline__ float from_double(double a)
    {
#ifdef __CUDA_ARCH__
        float r;
        asm("cvt.rn.f32.f64 %0, %1;" : "=f"(r) : "d"(a));
        return r;
#else
        return (float)a;
#endif
    }
};

template <>
struct Ieee<double> {
    DNNSTRESS_IEEE_BINARY(sub, -, double, "f64", "d")
    DNNSTRESS_IEEE_BINARY(add, +, double, "f64", "d")
    DNNSTRESS_IEEE_BINARY(mul, *, double, "f64", "d")
    DNNSTRESS_IEEE_BINARY(div, /, double, "f64", "d")

    static __device__ __forceinline__ double ceil(double a)
    {
#ifdef __CUDA_ARCH__
        double r;
        asm("cvt.rpi.f64.f64 %0, %1;" : "=d"(r) : "d"(a));
        return r;
#else
        return __builtin_ceil(a);
#endif
    }
    static __device__ __forceinline__ double clip(double a, double top)
    {
#ifdef __CUDA_ARCH__
        double r;
        asm("max.f64 %0, %1, 0d0000000000000000;\n\tmin.f64 %0, %0, %2;"
            : "=d"(r) : "d"(a), "d"(top));
        return r;
#else
        double r = a > 0.0 ? a : 0.0;
        return r < top ? r : top;
#endif
    }
    static __device__ __forceinline__ double from_double(double a) { return a; }
    static __device__ __forceinline__ unsigned int to_uint(double a) { return (unsigned int)a; }
    static __device__ __forceinline__ int not_finite(double a)
    {
        unsigned long long bits;
#ifdef __CUDA_ARCH__
        asm("mov.b64 %0, %1;" : "=l"(bits) : "d"(a));
#else
        __builtin_memcpy(&bits, &a, sizeof bits);
#endif
        return (bits & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
    }
};

#undef DNNSTRESS_IEEE_BINARY

template <typename From, typename To>
struct Convert;

template <>
struct Convert<float, double> {
    // Exact; without .ftz a float32 subnormal stays the same number.
    static __device__ __forceinline__ double of(float a)
    {
#ifdef __CUDA_ARCH__
        double r;
        asm("cvt.f64.f32 %0, %1;" : "=d"(r) : "f"(a));
        return r;
#else
        return (double)a;
#endif
    }
};

template <>
struct Convert<double, float> {
    static __device__ __forceinline__ float of(double a) { return Ieee<float>::from_double(a); }
};

// Code, as a T holding an integer: clip(ceil((x - lo) / safe_step) - 1, 0, top).
// PTX min/max return the other operand for a NaN, so a non-finite x (counted, and
// refused by the wrapper) never yields a code outside [0, top].
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

// The per-column parameters a thread keeps in registers for its V columns, cast from
// the fitted float64 values in the kernel (no flush-to-zero, see Ieee::from_double).
template <typename T, int V>
struct Params {
    T lo[V], step[V], safe_step[V];

    __device__ __forceinline__ Params(const double* __restrict__ lo_,
                                      const double* __restrict__ step_, long long col)
    {
        typedef Ieee<T> M;
#pragma unroll
        for (int k = 0; k < V; ++k) {
            double s = __ldg(step_ + col + k);
            lo[k] = M::from_double(__ldg(lo_ + col + k));
            step[k] = M::from_double(s);
            safe_step[k] = s > 0.0 ? step[k] : M::div(T(1), T(0));  // +inf: t = 0
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
// op maps one input vector to one output vector and counts its non-finite inputs.
// Returns the count of this thread.
template <typename In, typename Out, int V, typename Op>
__device__ __forceinline__ unsigned long long for_rows(const In* __restrict__ x,
                                                       Out* __restrict__ out, long long n_rows,
                                                       long long n_cols, long long col,
                                                       const Op& op)
{
    unsigned long long bad = 0;
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
                *reinterpret_cast<Vec<Out, V>*>(out + i * n_cols + col) = op(in[r], bad);
            }
        }
    }
    return bad;
}

template <typename T, int V>
struct ReconstructOp {
    Params<T, V> p;
    T top;

    __device__ __forceinline__ Vec<T, V> operator()(const Vec<T, V>& in,
                                                    unsigned long long& bad) const
    {
        Vec<T, V> res;
#pragma unroll
        for (int k = 0; k < V; ++k) {
            bad += Ieee<T>::not_finite(in.v[k]);
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

    __device__ __forceinline__ Vec<C, V> operator()(const Vec<T, V>& in,
                                                    unsigned long long& bad) const
    {
        Vec<C, V> res;
#pragma unroll
        for (int k = 0; k < V; ++k) {
            bad += Ieee<T>::not_finite(in.v[k]);
            res.v[k] = (C)Ieee<T>::to_uint(code_of(in.v[k], p.lo[k], p.safe_step[k], top));
        }
        return res;
    }
};

// Codes are integers below 65536, exact in T: the conversion cannot round or flush.
template <typename T, typename C, int V>
struct DecodeOp {
    Params<T, V> p;

    __device__ __forceinline__ Vec<T, V> operator()(const Vec<C, V>& in,
                                                    unsigned long long&) const
    {
        Vec<T, V> res;
#pragma unroll
        for (int k = 0; k < V; ++k) {
            res.v[k] = centre_of((T)in.v[k], p.lo[k], p.step[k]);
        }
        return res;
    }
};

// One thread's count into the kernel's counter: one atomic per thread that saw any.
__device__ __forceinline__ void add_bad(unsigned long long* n_bad, unsigned long long bad)
{
    if (bad) {
        atomicAdd(n_bad, bad);
    }
}

template <typename T, int V>
__device__ __forceinline__ void reconstruct(const T* __restrict__ x, T* __restrict__ out,
                                            const double* __restrict__ lo,
                                            const double* __restrict__ step,
                                            long long n_rows, long long n_cols, int n_levels,
                                            unsigned long long* n_bad)
{
    long long col = first_column<V>(n_cols);
    if (col < 0) {
        return;
    }
    ReconstructOp<T, V> op{Params<T, V>(lo, step, col), (T)(n_levels - 1)};
    add_bad(n_bad, for_rows<T, T, V>(x, out, n_rows, n_cols, col, op));
}

template <typename T, typename C, int V>
__device__ __forceinline__ void encode(const T* __restrict__ x, C* __restrict__ out,
                                       const double* __restrict__ lo,
                                       const double* __restrict__ step,
                                       long long n_rows, long long n_cols, int n_levels,
                                       unsigned long long* n_bad)
{
    long long col = first_column<V>(n_cols);
    if (col < 0) {
        return;
    }
    EncodeOp<T, C, V> op{Params<T, V>(lo, step, col), (T)(n_levels - 1)};
    add_bad(n_bad, for_rows<T, C, V>(x, out, n_rows, n_cols, col, op));
}

template <typename T, typename C, int V>
__device__ __forceinline__ void decode(const C* __restrict__ codes, T* __restrict__ out,
                                       const double* __restrict__ lo,
                                       const double* __restrict__ step,
                                       long long n_rows, long long n_cols)
{
    long long col = first_column<V>(n_cols);
    if (col < 0) {
        return;
    }
    DecodeOp<T, C, V> op{Params<T, V>(lo, step, col)};
    for_rows<C, T, V>(codes, out, n_rows, n_cols, col, op);
}

// Exact float32 <-> float64 conversion of n values (Q-B's cast, the quantizer's fit on
// float32 input): astype would run under CuPy's -ftz=true and flush subnormals.
template <typename From, typename To>
__device__ __forceinline__ void convert(const From* __restrict__ x, To* __restrict__ out,
                                        long long n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        out[i] = Convert<From, To>::of(x[i]);
    }
}

}  // namespace dnnstress

// Entry points:
//   quantize_reconstruct_<T>_v<V>(x, out, lo, step, n_rows, n_cols, n_levels, n_bad)
//   quantize_encode_<T>_<C>_v<V>(x, codes, lo, step, n_rows, n_cols, n_levels, n_bad)
//   quantize_decode_<T>_<C>_v<V>(codes, out, lo, step, n_rows, n_cols)
//   convert_<From>_<To>(x, out, n)
// lo and step hold n_cols float64 values; n_bad is one device counter the kernels add
// the number of NaN and infinite inputs to (the caller zeroes it).
#define DNNSTRESS_RECONSTRUCT(NAME, T, V)                                                   \
    extern "C" __global__ void __launch_bounds__(DNNSTRESS_THREADS)                         \
    NAME(const T* __restrict__ x, T* __restrict__ out, const double* __restrict__ lo,       \
         const double* __restrict__ step, long long n_rows, long long n_cols, int n_levels, \
         unsigned long long* n_bad)                                                         \
    {                                                                                       \
        dnnstress::reconstruct<T, V>(x, out, lo, step, n_rows, n_cols, n_levels, n_bad);    \
    }

#define DNNSTRESS_ENCODE(NAME, T, C, V)                                                     \
    extern "C" __global__ void __launch_bounds__(DNNSTRESS_THREADS)                         \
    NAME(const T* __restrict__ x, C* __restrict__ out, const double* __restrict__ lo,       \
         const double* __restrict__ step, long long n_rows, long long n_cols, int n_levels, \
         unsigned long long* n_bad)                                                         \
    {                                                                                       \
        dnnstress::encode<T, C, V>(x, out, lo, step, n_rows, n_cols, n_levels, n_bad);      \
    }

#define DNNSTRESS_DECODE(NAME, T, C, V)                                                     \
    extern "C" __global__ void __launch_bounds__(DNNSTRESS_THREADS)                         \
    NAME(const C* __restrict__ codes, T* __restrict__ out, const double* __restrict__ lo,   \
         const double* __restrict__ step, long long n_rows, long long n_cols)               \
    {                                                                                       \
        dnnstress::decode<T, C, V>(codes, out, lo, step, n_rows, n_cols);                   \
    }

#define DNNSTRESS_CONVERT(NAME, FROM, TO)                                                   \
    extern "C" __global__ void __launch_bounds__(DNNSTRESS_THREADS)                         \
    NAME(const FROM* __restrict__ x, TO* __restrict__ out, long long n)                     \
    {                                                                                       \
        dnnstress::convert<FROM, TO>(x, out, n);                                            \
    }

#define DNNSTRESS_QUANTIZE_T(T, TN, V)                                                      \
    DNNSTRESS_RECONSTRUCT(quantize_reconstruct_##TN##_v##V, T, V)                           \
    DNNSTRESS_ENCODE(quantize_encode_##TN##_u8_v##V, T, unsigned char, V)                   \
    DNNSTRESS_ENCODE(quantize_encode_##TN##_u16_v##V, T, unsigned short, V)                 \
    DNNSTRESS_DECODE(quantize_decode_##TN##_u8_v##V, T, unsigned char, V)                   \
    DNNSTRESS_DECODE(quantize_decode_##TN##_u16_v##V, T, unsigned short, V)

DNNSTRESS_QUANTIZE_T(float, f32, 1)
DNNSTRESS_QUANTIZE_T(float, f32, 2)
DNNSTRESS_QUANTIZE_T(float, f32, 4)
DNNSTRESS_QUANTIZE_T(double, f64, 1)
DNNSTRESS_QUANTIZE_T(double, f64, 2)

DNNSTRESS_CONVERT(convert_f32_f64, float, double)
DNNSTRESS_CONVERT(convert_f64_f32, double, float)
