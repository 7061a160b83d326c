// The native loop's dense products (training.cc's dense layers, layers.cc's attention): row-major
// SGEMM on one thread, on the library that runs it fastest on the CPU it finds.
//
// Where the addon is built with oneDNN that is dnnl_sgemm: it reads the CPU's features at run time
// and JITs its kernels for them. OpenBLAS instead picks kernels from a table of CPUs compiled into
// it, so a CPU newer than the build falls back to older ones (Debian's 0.3.21 ran its Prescott SSE3
// kernels on a Xeon with AVX-512), and even where it finds the CPU, its kernels were behind oneDNN's
// on these batch-sized shapes: 1.17-2.30x on a Xeon with AVX-512, 1.10-1.86x on an EPYC (one
// thread each, bench/dense-sgemm.cc). Without oneDNN it is OpenBLAS's cblas_sgemm.
//
// One thread: the products are small (batch-sized rows), and waking other threads for them cost
// more than it gave on every model measured (fedavg-cnn at batch 10: 1,356 samples/s with 2
// OpenBLAS threads, 1,921 with 1). The threads stay with oneDNN's convolutions.
#pragma once

#include <cblas.h>

#include <string>

#include "blas-threads.h"

#ifdef TESSERA_DNNL
#include <oneapi/dnnl/dnnl.h>
extern "C" {
void omp_set_num_threads(int threads);
int omp_get_max_threads(void);
}
#endif

namespace tessera {

// Which library denseGemm calls: the fastest built (Auto), or OpenBLAS where asked (setDenseEngine,
// for side-by-side benchmarks and for a CPU where oneDNN misbehaves). Process-wide, like the
// thread counts; set from the JavaScript thread.
enum class DenseLibrary { Auto, OpenBlas };
inline DenseLibrary denseLibrary = DenseLibrary::Auto;

#ifdef TESSERA_DNNL
// OpenMP (oneDNN's runtime here) on one thread for the scope, as SingleThreadedBlas is for OpenBLAS:
// the count is the calling thread's own (an OpenMP ICV), so the convolutions' count comes back after.
using SingleThreadedOmp = OneThreadScope<omp_get_max_threads, omp_set_num_threads>;
#endif

// C = alpha op(A) op(B) + beta C, row-major, op(A) m x k, op(B) k x n, on one thread.
inline void denseGemm(bool transA, bool transB, int m, int n, int k, float alpha, const float* a, int lda,
                      const float* b, int ldb, float beta, float* c, int ldc) {
#ifdef TESSERA_DNNL
  if (denseLibrary == DenseLibrary::Auto) {
    const SingleThreadedOmp oneThread;
    if (dnnl_sgemm(transA ? 'T' : 'N', transB ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) ==
        dnnl_success) {
      return;
    }
  }
  // oneDNN refuses only arguments it cannot take (the callers check sizes first); OpenBLAS then.
#endif
  const SingleThreadedBlas oneThread;
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, m, n, k, alpha,
              a, lda, b, ldb, beta, c, ldc);
}

// What runs denseGemm, for the backend's detail line: "oneDNN sgemm (avx512_core JIT)" with the
// instruction set its kernels are JIT-compiled for (the CPU's best that oneDNN's f32 GEMM has, capped
// by DNNL_MAX_CPU_ISA where set), else "OpenBLAS sgemm (<core> kernels)" with the core OpenBLAS chose.
inline std::string denseGemmEngine(const char* openblasCore) {
  const std::string openblas =
      std::string("OpenBLAS sgemm (") + (openblasCore == nullptr ? "unknown" : openblasCore) + " kernels)";
  if (denseLibrary == DenseLibrary::OpenBlas) return openblas;
#ifdef TESSERA_DNNL
  // oneDNN's ISA values are bit masks, each holding the ones below it; these are the ISAs its f32
  // GEMM has kernels for, best first.
  struct Isa {
    dnnl_cpu_isa_t isa;
    bool present;
    const char* name;
  };
  __builtin_cpu_init();
  const Isa isas[] = {
      {dnnl_cpu_isa_avx512_core,
       __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"),
       "avx512_core"},
      {dnnl_cpu_isa_avx2, __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"), "avx2"},
      {dnnl_cpu_isa_avx, static_cast<bool>(__builtin_cpu_supports("avx")), "avx"},
      {dnnl_cpu_isa_sse41, static_cast<bool>(__builtin_cpu_supports("sse4.1")), "sse41"},
  };
  const unsigned allowed = static_cast<unsigned>(dnnl_get_effective_cpu_isa());
  for (const Isa& isa : isas) {
    const unsigned mask = static_cast<unsigned>(isa.isa);
    if (isa.present && (allowed & mask) == mask) return std::string("oneDNN sgemm (") + isa.name + " JIT)";
  }
  return "oneDNN sgemm (reference kernels)";
#else
  return openblas;
#endif
}

}  // namespace tessera
