// Bit packing of quantization codes on the GPU.
//
// The specification is dnnstress/stress/_packing.py; these kernels must match it BIT FOR
// BIT.  Layout of a packed row of d values of b bits (1 <= b <= 16):
//
//   value j occupies bits [j * b, (j + 1) * b) of the row's bit stream, LSB first;
//   bit k of the stream is bit k % 8 of byte k / 8 (little-endian);
//   the row is padded with zero bits to row_bytes = ceil(d * b / 8) bytes.
//
// Integer arithmetic only, so no compiler flag can change a result.  Grid: x over the
// bytes (pack) or values (unpack) of a row, y (and threadIdx.y) over rows; both loops
// are grid-stride, so any grid covers any shape.  Codes wider than b bits are masked to
// b bits (the wrapper validates the range; the mask keeps a bad code from corrupting
// its neighbours).
//
// Compiles under NVRTC (no headers) and nvcc alike, and with g++ after host_shim.cuh
// (the tests' CPU build; integer code only, so there is no device-only branch).

#define DNNSTRESS_THREADS 256

namespace dnnstress {

// Byte `byte` of a packed row: gather the (at most 8 / b + 2) values that overlap it.
// Positions inside a row are 32-bit (the wrapper checks d * b < 2**31): cheaper division.
template <typename C>
__device__ __forceinline__ unsigned char pack_byte(const C* __restrict__ row, unsigned int n_cols,
                                                   unsigned int byte, unsigned int bits)
{
    unsigned int mask = (1u << bits) - 1u;
    unsigned int first_bit = byte * 8u;
    unsigned int j = first_bit / bits;
    unsigned int offset = first_bit - j * bits;  // bits of value j already in earlier bytes
    unsigned int acc = 0;
    for (unsigned int filled = 0; filled < 8u && j < n_cols; ++j) {
        acc |= (((unsigned int)row[j] & mask) >> offset) << filled;
        filled += bits - offset;
        offset = 0;
    }
    return (unsigned char)(acc & 0xffu);
}

// Value j of a packed row: read the at most 3 bytes that hold its b <= 16 bits.
__device__ __forceinline__ unsigned int unpack_value(const unsigned char* __restrict__ row,
                                                     unsigned int row_bytes, unsigned int j,
                                                     unsigned int bits)
{
    unsigned int first_bit = j * bits;
    unsigned int byte = first_bit >> 3;
    unsigned int shift = first_bit & 7u;
    unsigned int word = row[byte];
    if (byte + 1 < row_bytes) {
        word |= (unsigned int)row[byte + 1] << 8;
    }
    if (byte + 2 < row_bytes) {
        word |= (unsigned int)row[byte + 2] << 16;
    }
    return (word >> shift) & ((1u << bits) - 1u);
}

template <typename C>
__device__ __forceinline__ void pack(const C* __restrict__ codes, unsigned char* __restrict__ out,
                                     long long n_rows, unsigned int n_cols, unsigned int bits)
{
    unsigned int row_bytes = (n_cols * bits + 7u) / 8u;
    for (long long i = (long long)blockIdx.y * blockDim.y + threadIdx.y; i < n_rows;
         i += (long long)gridDim.y * blockDim.y) {
        const C* row = codes + i * n_cols;
        for (unsigned int b = blockIdx.x * blockDim.x + threadIdx.x; b < row_bytes;
             b += gridDim.x * blockDim.x) {
            out[i * row_bytes + b] = pack_byte(row, n_cols, b, bits);
        }
    }
}

template <typename C>
__device__ __forceinline__ void unpack(const unsigned char* __restrict__ packed,
                                       C* __restrict__ out, long long n_rows,
                                       unsigned int n_cols, unsigned int bits)
{
    unsigned int row_bytes = (n_cols * bits + 7u) / 8u;
    for (long long i = (long long)blockIdx.y * blockDim.y + threadIdx.y; i < n_rows;
         i += (long long)gridDim.y * blockDim.y) {
        const unsigned char* row = packed + i * row_bytes;
        for (unsigned int j = blockIdx.x * blockDim.x + threadIdx.x; j < n_cols;
             j += gridDim.x * blockDim.x) {
            out[i * n_cols + j] = (C)unpack_value(row, row_bytes, j, bits);
        }
    }
}

}  // namespace dnnstress

// Entry points: pack_codes_<code>(codes, packed, n_rows, n_cols, bits) and
// unpack_codes_<code>(packed, codes, n_rows, n_cols, bits), code in {u8, u16}.
#define DNNSTRESS_PACK(SUFFIX, C)                                                          \
    extern "C" __global__ void __launch_bounds__(DNNSTRESS_THREADS)                        \
    pack_codes_##SUFFIX(const C* __restrict__ codes, unsigned char* __restrict__ packed,   \
                        long long n_rows, unsigned int n_cols, unsigned int bits)          \
    {                                                                                      \
        dnnstress::pack<C>(codes, packed, n_rows, n_cols, bits);                           \
    }                                                                                      \
    extern "C" __global__ void __launch_bounds__(DNNSTRESS_THREADS)                        \
    unpack_codes_##SUFFIX(const unsigned char* __restrict__ packed, C* __restrict__ codes, \
                          long long n_rows, unsigned int n_cols, unsigned int bits)        \
    {                                                                                      \
        dnnstress::unpack<C>(packed, codes, n_rows, n_cols, bits);                         \
    }

DNNSTRESS_PACK(u8, unsigned char)
DNNSTRESS_PACK(u16, unsigned short)
