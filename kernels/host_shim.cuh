// Host build of the CUDA kernels, for tests on machines without a GPU.
//
// g++ compiles the real kernels/*.cu sources, unchanged, after this header: it defines
// the CUDA keywords and built-in variables the kernels use, and a serial launcher that
// runs one thread after another over the whole grid.  The kernels' inline PTX sits
// behind #ifdef __CUDA_ARCH__ (never defined here), so the host build runs their portable
// C++ branch, the same IEEE operations one by one (build with -ffp-contract=off and
// without -ffast-math, so that none is fused or approximated).
//
// DNNSTRESS_HOST(kernel) exports, with C linkage:
//   int host_<kernel>(const unsigned int geometry[6], void** args)
//       runs the kernel on grid (geometry[0..2]) x block (geometry[3..5]); args point at
//       the arguments, as in cuLaunchKernel.  Returns 0, or 1 for a launch CUDA would
//       refuse (a block over the kernel's DNNSTRESS_THREADS, a grid dimension over its
//       limit, an empty dimension).
//   const char* signature_<kernel>()
//       one letter per parameter: F D B H Q for pointers to float, double, unsigned
//       char, unsigned short, unsigned long long; q long long, I unsigned int, i int.

#ifndef DNNSTRESS_HOST_SHIM_CUH
#define DNNSTRESS_HOST_SHIM_CUH

#include <cstddef>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct dim3 {
    unsigned int x, y, z;
};

inline dim3 gridDim{1, 1, 1}, blockDim{1, 1, 1}, blockIdx{0, 0, 0}, threadIdx{0, 0, 0};

template <typename T>
inline T __ldg(const T* p)
{
    return *p;
}

// Threads run one at a time, so a plain read-modify-write is atomic.
inline unsigned long long atomicAdd(unsigned long long* address, unsigned long long value)
{
    unsigned long long old = *address;
    *address = old + value;
    return old;
}

namespace dnnstress_host {

template <typename T>
constexpr char type_code()
{
    if constexpr (std::is_same_v<T, const float*> || std::is_same_v<T, float*>) return 'F';
    else if constexpr (std::is_same_v<T, const double*> || std::is_same_v<T, double*>) return 'D';
    else if constexpr (std::is_same_v<T, const unsigned char*> ||
                       std::is_same_v<T, unsigned char*>) return 'B';
    else if constexpr (std::is_same_v<T, const unsigned short*> ||
                       std::is_same_v<T, unsigned short*>) return 'H';
    else if constexpr (std::is_same_v<T, unsigned long long*>) return 'Q';
    else if constexpr (std::is_same_v<T, long long>) return 'q';
    else if constexpr (std::is_same_v<T, unsigned int>) return 'I';
    else if constexpr (std::is_same_v<T, int>) return 'i';
    else return '?';
}

template <typename... A>
const char* signature(void (*)(A...))
{
    static const char text[] = {type_code<A>()..., '\0'};
    return text;
}

template <typename... A, std::size_t... I>
void call(void (*kernel)(A...), void** args, std::index_sequence<I...>)
{
    kernel(*static_cast<A*>(args[I])...);
}

template <typename... A>
int launch(void (*kernel)(A...), unsigned int max_threads, const unsigned int* g, void** args)
{
    const unsigned long long limits[6] = {2147483647ull, 65535, 65535, 1024, 1024, 64};
    for (int k = 0; k < 6; ++k) {
        if (g[k] == 0 || g[k] > limits[k]) {
            return 1;
        }
    }
    if ((unsigned long long)g[3] * g[4] * g[5] > max_threads) {
        return 1;
    }
    gridDim = {g[0], g[1], g[2]};
    blockDim = {g[3], g[4], g[5]};
    for (blockIdx.z = 0; blockIdx.z < g[2]; ++blockIdx.z)
        for (blockIdx.y = 0; blockIdx.y < g[1]; ++blockIdx.y)
            for (blockIdx.x = 0; blockIdx.x < g[0]; ++blockIdx.x)
                for (threadIdx.z = 0; threadIdx.z < g[5]; ++threadIdx.z)
                    for (threadIdx.y = 0; threadIdx.y < g[4]; ++threadIdx.y)
                        for (threadIdx.x = 0; threadIdx.x < g[3]; ++threadIdx.x)
                            call(kernel, args, std::index_sequence_for<A...>{});
    return 0;
}

}  // namespace dnnstress_host

#define DNNSTRESS_HOST(NAME)                                                               \
    extern "C" int host_##NAME(const unsigned int* geometry, void** args)                  \
    {                                                                                      \
        return dnnstress_host::launch(&NAME, DNNSTRESS_THREADS, geometry, args);           \
    }                                                                                      \
    extern "C" const char* signature_##NAME() { return dnnstress_host::signature(&NAME); }

#endif
