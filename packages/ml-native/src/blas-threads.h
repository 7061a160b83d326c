// One thread for a scope: OneThreadScope over a library's thread-count getter and setter, and
// SingleThreadedBlas, OpenBLAS's (dense-gemm.h's products where oneDNN is absent, sgdUpdate).
#pragma once

extern "C" {
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
}

namespace tessera {

// A library's thread count held at one for a scope, given its getter and setter, and put back
// after (the count is process-wide for OpenBLAS, the calling thread's own for OpenMP).
template <int (*getThreads)(), void (*setThreads)(int)>
class OneThreadScope {
 public:
  OneThreadScope() : threads_(getThreads()) {
    if (threads_ != 1) setThreads(1);
  }
  ~OneThreadScope() {
    if (threads_ != 1) setThreads(threads_);
  }
  OneThreadScope(const OneThreadScope&) = delete;
  OneThreadScope& operator=(const OneThreadScope&) = delete;

 private:
  int threads_;
};

// OpenBLAS on one thread for the scope: a training step's BLAS calls are batch-sized, too
// small to pay for waking other threads (dense-gemm.h has the figures).
using SingleThreadedBlas = OneThreadScope<openblas_get_num_threads, openblas_set_num_threads>;

}  // namespace tessera
