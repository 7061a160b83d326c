// OpenBLAS on one thread for a scope (training.cc's dense products, layers.cc's attention).
#pragma once

extern "C" {
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
}

namespace tessera {

// OpenBLAS on one thread for the scope: the dense products of a training step are small
// (batch-sized rows), and waking OpenBLAS's other threads for them cost more than it gave
// on every model measured (fedavg-cnn at batch 10: 1,356 samples/s with 2 OpenBLAS
// threads, 1,921 with 1). The threads stay with oneDNN's convolutions.
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
