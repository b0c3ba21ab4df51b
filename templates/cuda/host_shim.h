// symgrad host shim: compiles a generated CUDA layer (cuda_layer.cu) with a C++ compiler, so
// that the very kernel source of the GPU backend runs on the CPU (symgrad's "cuda-host" backend).
//
// It defines what the kernels use from CUDA and nothing more:
//   - the qualifiers __global__, __device__, __host__, __forceinline__ (__restrict__ is g++'s own);
//   - threadIdx, blockIdx, blockDim, gridDim, one copy per OS thread;
//   - the math functions, from <cmath>, with their float and double overloads, unqualified;
//   - symgrad_launch(grid, block, body): runs a kernel body once per (block, thread) of a 1-D
//     grid. Compiled with -fopenmp, launches of 64k threads or more share their blocks among
//     OpenMP threads; that is sound because a generated kernel never synchronises and every
//     thread owns what it writes.
//
// The extern "C" launchers that ctypes calls are written by symgrad.runtime.cuda, one per kernel
// and precision, from the same argument lists the template declares.
#pragma once

#include <cmath>
#include <cstddef>
#include <math.h>  // every <cmath> function, float and double overloads, in the global namespace

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct symgrad_dim3 {
    unsigned x, y, z;
};

static thread_local symgrad_dim3 threadIdx, blockIdx, blockDim, gridDim;


template <typename Body>
static void symgrad_launch(unsigned grid, unsigned block, Body body)
{
#pragma omp parallel for schedule(static) if ((unsigned long)grid * block >= 65536)
    for (long b = 0; b < (long)grid; ++b) {
        gridDim = {grid, 1, 1};
        blockDim = {block, 1, 1};
        blockIdx = {(unsigned)b, 0, 0};
        for (unsigned t = 0; t < block; ++t) {
            threadIdx = {t, 0, 0};
            body();
        }
    }
}
