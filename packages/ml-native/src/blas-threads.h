// OpenBLAS on one thread for a scope (dense-gemm.h's products where oneDNN is absent, sgdUpdate).
#pragma once

extern "C" {
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
}

namespace tessera {

// OpenBLAS on one thread for the scope: a training step's BLAS calls are batch-sized, too
// small to pay for waking other threads (dense-gemm.h has the figures).
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() : threads_(openblas_get_num_threads()) {
    if (threads_ != 1) openblas_set_num_threads(1);
  }
  ~SingleThreadedBlas() {
    if (threads_ != 1) openblas_set_num_threads(threads_);
  }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int threads_;
};

}  // namespace tessera
