// oneDNN's dnnl_sgemm against OpenBLAS's cblas_sgemm, one thread each, on the dense shapes of the
// native loop's 2NN and CNN: why packages/ml-native/src/dense-gemm.h picks oneDNN (not part of the
// build or the tests; bench/results/dense-sgemm-xeon.txt is a run).
//   g++ -O2 -std=c++20 -fopenmp bench/dense-sgemm.cc -o /tmp/dense-sgemm $(pkg-config --cflags --libs openblas) -ldnnl && /tmp/dense-sgemm
#include <cblas.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <chrono>
#include <cstdio>
#include <vector>
extern "C" char* openblas_get_corename(void);
extern "C" void openblas_set_num_threads(int);
static double best(auto f, int reps) { double b = 1e9; for (int r = 0; r < 3; r++) f(); for (int r = 0; r < reps; r++) { auto t = std::chrono::steady_clock::now(); f(); b = std::min(b, std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count()); } return b; }
int main() {
  openblas_set_num_threads(1); omp_set_num_threads(1);
  std::printf("OpenBLAS core %s; oneDNN isa %d\n", openblas_get_corename(), (int)dnnl_get_effective_cpu_isa());
  struct S { const char* what; int m, k, n; char ta, tb; } shapes[] = {
    {"2NN fwd 784->200 B=10", 10, 784, 200, 'N', 'N'}, {"2NN fwd 784->200 B=50", 50, 784, 200, 'N', 'N'},
    {"2NN dW 784x200 B=10 (x^T dz)", 784, 10, 200, 'T', 'N'}, {"2NN dW 784x200 B=50", 784, 50, 200, 'T', 'N'},
    {"2NN dx 200->200 B=10 (dz w^T)", 10, 200, 200, 'N', 'T'},
    {"CNN fwd 3136->512 B=50", 50, 3136, 512, 'N', 'N'}, {"CNN dW 3136x512 B=50", 3136, 50, 512, 'T', 'N'},
    {"square 2048", 2048, 2048, 2048, 'N', 'N'} };
  for (auto s : shapes) {
    std::vector<float> a((size_t)s.m * s.k, 0.5f), b((size_t)s.k * s.n, 0.25f), c((size_t)s.m * s.n);
    int lda = s.ta == 'N' ? s.k : s.m; int ldb = s.tb == 'N' ? s.n : s.k;
    double flops = 2.0 * s.m * s.k * s.n; int reps = flops > 1e9 ? 5 : 200;
    double t1 = best([&] { cblas_sgemm(CblasRowMajor, s.ta == 'N' ? CblasNoTrans : CblasTrans, s.tb == 'N' ? CblasNoTrans : CblasTrans, s.m, s.n, s.k, 1.f, a.data(), lda, b.data(), ldb, 0.f, c.data(), s.n); }, reps);
    double t2 = best([&] { dnnl_sgemm(s.ta, s.tb, s.m, s.n, s.k, 1.f, a.data(), lda, b.data(), ldb, 0.f, c.data(), s.n); }, reps);
    std::printf("%-34s openblas %7.1f GFLOP/s  onednn %7.1f GFLOP/s  (%.2fx)\n", s.what, flops / t1 / 1e9, flops / t2 / 1e9, t1 / t2);
  }
}
