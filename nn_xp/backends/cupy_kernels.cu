// nn_xp's fused CUDA kernels; cupy_ops.py launches them through cupy.RawModule.
//
// One source for two compilers: NVRTC at run time (every instantiation in cupy_ops.name_expressions)
// and nvcc in tests/test_cupy_kernels.py, which compiles the same instantiations on a machine with no
// GPU. So: no host headers, no standard library, 64-bit sizes as long long.
//
// Element types T: double, float, __half, and __nv_bfloat16 where NN_XP_BFLOAT16 is defined (a module
// of its own, so that a toolkit that cannot build it loses only those). Half types are loaded,
// computed on in float and rounded once when stored: mixed precision's contract (numpy_ops.py).
//
// Reductions are deterministic: no floating-point atomics. Each block writes its partial sums, and
// the last block to finish (an atomic ticket taken after a __threadfence) adds the partials in a
// fixed order and resets its ticket for the next launch. The order depends on the launch shape,
// which cupy_ops.py derives from the array shapes and the GPU's multiprocessor count alone.

#include <cuda_fp16.h>
#ifdef NN_XP_BFLOAT16
#include <cuda_bf16.h>
#endif

namespace nn_xp {

// cupy_ops.py mirrors these (ACTIVATION_CODES, TILE, ROWS, BLOCK); a CPU test checks that they agree.
enum Activation { LINEAR = 0, RELU = 1, SIGMOID = 2, TANH = 3, LEAKY_RELU = 4 };
constexpr int TILE = 32;   // backward_bias: columns per block (blockDim.x)
constexpr int ROWS = 8;    // backward_bias: rows of threads per block (blockDim.y)
constexpr int BLOCK = 256; // softmax_cross_entropy: threads per block

// The type the arithmetic is done in.
template <typename T> struct Acc { typedef T type; };
template <> struct Acc<__half> { typedef float type; };

__device__ inline float load(float x) { return x; }
__device__ inline double load(double x) { return x; }
__device__ inline float load(__half x) { return __half2float(x); }
__device__ inline void store(float& to, float x) { to = x; }
__device__ inline void store(double& to, double x) { to = x; }
__device__ inline void store(__half& to, float x) { to = __float2half_rn(x); }

#ifdef NN_XP_BFLOAT16
template <> struct Acc<__nv_bfloat16> { typedef float type; };
__device__ inline float load(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ inline void store(__nv_bfloat16& to, float x) { to = __float2bfloat16_rn(x); }
#endif

__device__ inline float lowest(float) { return -__int_as_float(0x7f800000); }              // -inf
__device__ inline double lowest(double) { return -__longlong_as_double(0x7ff0000000000000LL); }

// A = f(Z), as activations.py's forward functions.
template <typename C> __device__ inline C activate(int f, C Z, C slope) {
    switch (f) {
    case RELU: return (Z > C(0) || Z != Z) ? Z : C(0);  // maximum(Z, 0): NaN propagates
    case SIGMOID: {  // exp of a non-positive number: no overflow
        const C E = exp(-fabs(Z));
        return Z >= C(0) ? C(1) / (C(1) + E) : E / (C(1) + E);
    }
    case TANH: return tanh(Z);
    case LEAKY_RELU: return Z > C(0) ? Z : slope * Z;
    default: return Z;
    }
}

// dZ = dA * f'(Z), from A alone (as numpy_ops.NumpyOps._activation_backward).
template <typename C> __device__ inline C derivative(int f, C dA, C A, C slope) {
    switch (f) {
    case RELU: return A > C(0) ? dA : C(0);
    case SIGMOID: return dA * (A * (C(1) - A));
    case TANH: return dA * (C(1) - A * A);
    case LEAKY_RELU: return A > C(0) ? dA : slope * dA;  // slope >= 0: A > 0 exactly where Z > 0
    default: return dA;
    }
}

// Z = f(Z + b) in place. Z: (n, k) C-contiguous, size = n * k; b: (k,).
template <typename T>
__global__ void bias_activate(T* Z, const T* b, long long size, int k, int f, double slope) {
    typedef typename Acc<T>::type C;
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    const long long stride = (long long)gridDim.x * blockDim.x;
    int j = (int)(i % k);  // the column, advanced without a division per element
    const int j_step = (int)(stride % k);
    for (; i < size; i += stride) {
        store(Z[i], activate<C>(f, load(Z[i]) + load(b[j]), C(slope)));
        j += j_step;
        if (j >= k) j -= k;
    }
}

// dZ = dA * f'(A) written over dA, and db = the column sums of the stored dZ, in one launch.
// dA, A: (n, k) C-contiguous; db: (k,). Grid: (column tiles of TILE, row chunks of `chunk` rows);
// partials: (gridDim.y, k) scratch; tickets: (gridDim.x,) counters, zero before and after a launch.
template <typename T>
__global__ void backward_bias(T* dA, const T* A, T* db, typename Acc<T>::type* partials, unsigned int* tickets,
                              long long n, int k, long long chunk, int f, double slope) {
    typedef typename Acc<T>::type C;
    __shared__ C sums[ROWS][TILE];
    __shared__ bool last;
    const int x = threadIdx.x, y = threadIdx.y;
    const int j = blockIdx.x * TILE + x;
    const long long start = blockIdx.y * chunk;
    const long long stop = start + chunk < n ? start + chunk : n;
    C s = C(0);
    if (j < k) {
        for (long long r = start + y; r < stop; r += ROWS) {
            const long long i = r * k + j;
            T dZ;
            store(dZ, derivative<C>(f, load(dA[i]), load(A[i]), C(slope)));
            dA[i] = dZ;
            s += load(dZ);  // the stored (rounded) value, as sum(dZ) adds it
        }
    }
    sums[y][x] = s;
    __syncthreads();
    if (y == 0) {
        for (int r = 1; r < ROWS; ++r) s += sums[r][x];
        if (j < k) partials[blockIdx.y * (long long)k + j] = s;
        __threadfence();  // the partial is visible to every block before the ticket is taken
    }
    __syncthreads();
    if (x == 0 && y == 0) last = atomicAdd(&tickets[blockIdx.x], 1u) == gridDim.y - 1;
    __syncthreads();
    if (!last) return;
    // The last block of this column tile adds the chunks' partials, in chunk order per thread row.
    s = C(0);
    if (j < k) {
        const volatile C* p = partials;  // written by other blocks: read past this SM's L1
        for (unsigned int c = y; c < gridDim.y; c += ROWS) s += p[c * (long long)k + j];
    }
    sums[y][x] = s;
    __syncthreads();
    if (y == 0) {
        for (int r = 1; r < ROWS; ++r) s += sums[r][x];
        if (j < k) store(db[j], s);
        if (x == 0) tickets[blockIdx.x] = 0;
    }
}

// The sum of sums[0 .. BLOCK), in a fixed tree order; every thread of the block must call it.
template <typename C> __device__ inline C block_sum(C* sums) {
    for (int half = BLOCK / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) sums[threadIdx.x] += sums[threadIdx.x + half];
        __syncthreads();
    }
    return sums[0];
}

// Lanes of one group (`group`: a power of two <= 32, aligned in the warp) combine their values.
template <typename C> __device__ inline C group_sum(C v, int group) {
    for (int offset = group / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

template <typename C> __device__ inline C group_max(C v, int group) {
    for (int offset = group / 2; offset > 0; offset /= 2) {
        const C u = __shfl_xor_sync(0xffffffffu, v, offset);
        v = (u > v || u != u) ? u : v;  // a NaN wins, as in max(Z)
    }
    return v;
}

// Softmax cross-entropy from the logits, Ops.softmax_cross_entropy's contract:
//     L = sum_i w_i (log S_i * sum_j Y_ij - <Y_i, Z_i - m_i>),   dZ_i = w_i (exp(Z_i - m_i) / S_i - Y_i)
// with m_i the row maximum and S_i = sum_j exp(Z_ij - m_i); Z is left shifted by m_i (same argmax).
// w_i is the column w (n, 1) or, where w is null, the number `weight` (then applied to the sum).
// One group of `group` lanes per row; BLOCK / group rows per block and pass. partials: (gridDim.x,)
// scratch, ticket: one counter, zero before and after a launch; L: a 0-d array.
template <typename T>
__global__ void softmax_cross_entropy(T* Z, const T* Y, const T* w, double weight, T* dZ,
                                      typename Acc<T>::type* partials, unsigned int* ticket, T* L,
                                      long long n, int k, int group) {
    typedef typename Acc<T>::type C;
    __shared__ C sums[BLOCK];
    __shared__ bool last;
    const int g = threadIdx.x % group;
    const long long rows_per_block = BLOCK / group;
    C total = C(0);
    // The bound is the block's, not the row's: every lane of a warp reaches every shuffle.
    for (long long first = blockIdx.x * rows_per_block; first < n; first += gridDim.x * rows_per_block) {
        const long long row = first + threadIdx.x / group;
        const bool valid = row < n;
        const long long o = row * k;
        C m = lowest(C(0));
        if (valid)
            for (int c = g; c < k; c += group) {
                const C z = load(Z[o + c]);
                m = (z > m || z != z) ? z : m;
            }
        m = group_max(m, group);
        C S = C(0), YZ = C(0), Ysum = C(0);
        if (valid)
            for (int c = g; c < k; c += group) {
                const C z = load(Z[o + c]) - m, y = load(Y[o + c]);
                S += exp(z);
                YZ += y * z;
                Ysum += y;
            }
        S = group_sum(S, group);
        YZ = group_sum(YZ, group);
        Ysum = group_sum(Ysum, group);
        if (valid) {
            const C scale = w != nullptr ? load(w[row]) : C(weight);
            for (int c = g; c < k; c += group) {
                const C z = load(Z[o + c]) - m;
                store(Z[o + c], z);
                store(dZ[o + c], (exp(z) / S - load(Y[o + c])) * scale);
            }
            if (g == 0) total += (log(S) * Ysum - YZ) * (w != nullptr ? scale : C(1));
        }
    }
    sums[threadIdx.x] = total;
    __syncthreads();
    total = block_sum(sums);
    if (threadIdx.x == 0) {
        partials[blockIdx.x] = total;
        __threadfence();
        last = atomicAdd(ticket, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last) return;
    C t = C(0);
    const volatile C* p = partials;
    for (unsigned int b = threadIdx.x; b < gridDim.x; b += BLOCK) t += p[b];
    sums[threadIdx.x] = t;  // every thread read block_sum's result before the barrier above
    __syncthreads();
    t = block_sum(sums);
    if (threadIdx.x == 0) {
        store(L[0], w != nullptr ? t : t * C(weight));
        *ticket = 0;
    }
}

// B_a = A_a[rows] for up to four arrays a in one launch (a batch's X, Y and sample weights).
// A_a: (n_source, k_a) C-contiguous, B_a: (n, k_a); unused slots have k_a = 0. The elements are
// copied as U, an unsigned integer of their size, so any dtype of that size is gathered alike.
// Out-of-range rows are clipped, as NumPy's take(mode="clip") in NumpyOps.take_rows.
template <typename U, typename I>
__global__ void take_rows(const I* rows, long long n, long long n_source,
                          const U* A0, U* B0, int k0, const U* A1, U* B1, int k1,
                          const U* A2, U* B2, int k2, const U* A3, U* B3, int k3) {
    const int width = k0 + k1 + k2 + k3;
    const long long size = n * width;
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    const long long stride = (long long)gridDim.x * blockDim.x;
    long long r = i / width;  // the output row and column, advanced without a division per element
    int c = (int)(i % width);
    const long long r_step = stride / width;
    const int c_step = (int)(stride % width);
    for (; i < size; i += stride) {
        long long s = (long long)rows[r];
        s = s < 0 ? 0 : (s >= n_source ? n_source - 1 : s);
        int j = c;
        if (j < k0) {
            B0[r * k0 + j] = A0[s * k0 + j];
        } else if ((j -= k0) < k1) {
            B1[r * k1 + j] = A1[s * k1 + j];
        } else if ((j -= k1) < k2) {
            B2[r * k2 + j] = A2[s * k2 + j];
        } else {
            j -= k2;
            B3[r * k3 + j] = A3[s * k3 + j];
        }
        r += r_step;
        c += c_step;
        if (c >= width) {
            c -= width;
            ++r;
        }
    }
}

}  // namespace nn_xp
