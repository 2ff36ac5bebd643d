// Runs nn_xp's CUDA kernels (nn_xp/cupy_kernels.cu) on the CPU, for the kernel tests on machines
// without a GPU (tests/cuda_on_cpu.py). Not a CUDA emulator: just enough of the execution model for
// these kernels.
// - The blocks run one after another. A block's threads are fibers (ucontext) on one OS thread:
//   each runs until its next __syncthreads, then the next one does; a barrier is a round. Each
//   round takes the threads in a new pseudo-random order, so that a missing barrier between one
//   thread's write and another's read shows. Every thread of a block must reach the same barriers
//   (these kernels return early only where the whole block does).
// - __shared__ variables become static locals: one per kernel instantiation, which is a block's
//   shared memory while blocks run one after another.
// - Warp shuffles go through the block barrier: right where every thread of the block reaches the
//   same shuffles, as in these kernels.
// - exp, tanh, log are the host's, so results may differ from a GPU's in the last bit.
// What it cannot show: races between blocks running at once, and the memory model of a real GPU.
#pragma once

#include <setjmp.h>
#include <ucontext.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <cuda_fp16.h>
#ifdef NN_XP_BFLOAT16
#include <cuda_bf16.h>
#endif

// cuda_fp16.h defines these as attributes for nvcc; a host compiler takes them away.
#undef __global__
#undef __device__
#undef __shared__
#define __global__
#define __device__
#define __shared__ static

using std::exp;
using std::fabs;
using std::log;
using std::tanh;

inline dim3 gridDim, blockDim, blockIdx, threadIdx;  // dim3: vector_types.h's, through cuda_fp16.h

// A fiber starts through ucontext, then switches with _setjmp/_longjmp, which (unlike swapcontext)
// make no system call to save the signal mask: a barrier costs a few nanoseconds per thread.
struct Fiber {
    ucontext_t context;
    jmp_buf resume;
    std::vector<char> stack;
    bool started = false, done = false;
};
inline ucontext_t scheduler_context;
inline jmp_buf scheduler;
inline std::vector<Fiber> fibers;
inline unsigned int current = 0;
inline std::function<void()> fiber_body;
inline double warp_slots[1024];

inline void fiber_main() {
    fiber_body();
    fibers[current].done = true;
    _longjmp(scheduler, 1);
}

inline void __syncthreads() {
    if (!_setjmp(fibers[current].resume)) _longjmp(scheduler, 1);
}
inline void __threadfence() {}
inline unsigned int atomicAdd(unsigned int* address, unsigned int value) {
    const unsigned int old = *address;
    *address = old + value;
    return old;
}

template <typename C> inline C __shfl_xor_sync(unsigned int, C v, int offset) {
    const unsigned int t = threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y;
    warp_slots[t] = (double)v;
    __syncthreads();
    const C u = (C)warp_slots[(t & ~31u) | ((t & 31u) ^ (unsigned int)offset)];
    __syncthreads();
    return u;
}

inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, sizeof f);
    return f;
}

inline double __longlong_as_double(long long i) {
    double d;
    std::memcpy(&d, &i, sizeof d);
    return d;
}

// Runs body() as every thread of every block of the grid.
template <typename Body> void launch(dim3 grid, dim3 block, Body body) {
    gridDim = grid;
    blockDim = block;
    const unsigned int threads = block.x * block.y * block.z;
    fibers.resize(threads);
    fiber_body = body;
    std::vector<unsigned int> order(threads);
    for (unsigned int i = 0; i < threads; ++i) order[i] = i;
    unsigned long long random = 0x9E3779B97F4A7C15ULL;  // the same schedule every run
    for (unsigned int z = 0; z < grid.z; ++z)
        for (unsigned int y = 0; y < grid.y; ++y)
            for (unsigned int x = 0; x < grid.x; ++x) {
                blockIdx = dim3{x, y, z};
                for (Fiber& fiber : fibers) {
                    fiber.stack.resize(1 << 16);
                    fiber.started = fiber.done = false;
                    getcontext(&fiber.context);
                    fiber.context.uc_stack.ss_sp = fiber.stack.data();
                    fiber.context.uc_stack.ss_size = fiber.stack.size();
                    fiber.context.uc_link = nullptr;
                    makecontext(&fiber.context, fiber_main, 0);
                }
                for (bool running = true; running;) {
                    running = false;
                    for (unsigned int i = threads - 1; i > 0; --i) {  // Fisher-Yates, with xorshift
                        random ^= random << 13;
                        random ^= random >> 7;
                        random ^= random << 17;
                        std::swap(order[i], order[random % (i + 1)]);
                    }
                    for (unsigned int i = 0; i < threads; ++i) {
                        current = order[i];
                        if (fibers[current].done) continue;
                        threadIdx = dim3{current % block.x, current / block.x % block.y,
                                         current / (block.x * block.y)};
                        running = true;
                        if (_setjmp(scheduler)) continue;  // back from the fiber
                        Fiber& fiber = fibers[current];
                        if (fiber.started) _longjmp(fiber.resume, 1);
                        fiber.started = true;
                        swapcontext(&scheduler_context, &fiber.context);
                    }
                }
            }
}

// A kernel launched as cuLaunchKernel launches it: params[i] points at the i-th argument's bytes.
template <typename... P, std::size_t... I>
void call(void (*kernel)(P...), void** params, std::index_sequence<I...>) {
    kernel(*static_cast<P*>(params[I])...);
}

template <typename... P>
void launch_packed(void (*kernel)(P...), dim3 grid, dim3 block, void** params) {
    launch(grid, block, [&] { call(kernel, params, std::index_sequence_for<P...>{}); });
}

// The kernel's parameters, one word each: p<pointee size> for pointers, i<size> for integers,
// f<size> for floating point, so that the caller can check what it passes.
template <typename P> void describe(std::string& out) {
    if constexpr (std::is_pointer_v<P>)
        out += "p" + std::to_string(sizeof(std::remove_pointer_t<P>));
    else if constexpr (std::is_floating_point_v<P>)
        out += "f" + std::to_string(sizeof(P));
    else
        out += "i" + std::to_string(sizeof(P));
    out += " ";
}

template <typename... P> std::string signature(void (*)(P...)) {
    std::string out;
    (describe<P>(out), ...);
    return out;
}
