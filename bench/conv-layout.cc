// A lead for the CNN's last 1.2-1.4x (README "How close the CNN is to the core's arithmetic"): oneDNN's
// convolution primitives for fedavg-cnn's second convolution (14x14x32 -> 14x14x64, 5x5, same padding)
// on one thread, with the activations in NHWC (what the native loop uses: its pooling and dense layers
// read them directly) against the layout oneDNN picks for itself (format_tag::any, blocked on AVX-512).
// Times the primitives alone, without the reorders a blocked layout would need between layers: an
// upper bound on what keeping activations blocked could give. Not part of the build or the tests.
//   g++ -O2 -std=c++17 bench/conv-layout.cc -o /tmp/conv-layout -ldnnl && OMP_NUM_THREADS=1 /tmp/conv-layout
#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <unordered_map>

using namespace dnnl;
using tag = memory::format_tag;

static double best(const std::function<void()>& f, int reps) {
  double b = 1e9;
  for (int r = 0; r < 3; r++) f();
  for (int r = 0; r < reps; r++) {
    auto t = std::chrono::steady_clock::now();
    f();
    b = std::min(b, std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count());
  }
  return b;
}

int main() {
  engine eng(engine::kind::cpu, 0);
  stream s(eng);
  const auto f32 = memory::data_type::f32;
  std::printf("fedavg-cnn conv2 (14x14x32 -> 14x14x64, 5x5, same), one thread, best of 50, ms\n");
  std::printf("%-6s %-8s %10s %10s %10s %10s  (layouts chosen)\n", "batch", "layout", "forward", "bwd data",
              "bwd wts", "total");
  for (int batch : {10, 50}) {
    for (bool blocked : {false, true}) {
      const memory::dims src{batch, 32, 14, 14}, dst{batch, 64, 14, 14}, wts{64, 32, 5, 5}, bias{64};
      const memory::dims strides{1, 1}, pad{2, 2};
      const tag act = blocked ? tag::any : tag::nhwc;
      memory::desc srcMd(src, f32, act), dstMd(dst, f32, act), wMd(wts, f32, tag::any), bMd(bias, f32, tag::x);
      convolution_forward::primitive_desc fwd(
          convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct, srcMd, wMd, bMd,
                                    dstMd, strides, pad, pad),
          eng);
      convolution_backward_data::primitive_desc bwdData(
          convolution_backward_data::desc(algorithm::convolution_direct, srcMd, wMd, dstMd, strides, pad, pad), eng,
          fwd);
      convolution_backward_weights::primitive_desc bwdWeights(
          convolution_backward_weights::desc(algorithm::convolution_direct, srcMd, wMd, bMd, dstMd, strides, pad,
                                             pad),
          eng, fwd);
      memory x(fwd.src_desc(), eng), w(fwd.weights_desc(), eng), b(fwd.bias_desc(), eng), y(fwd.dst_desc(), eng);
      memory dy(bwdData.diff_dst_desc(), eng), dx(bwdData.diff_src_desc(), eng);
      memory dw(bwdWeights.diff_weights_desc(), eng), db(bwdWeights.diff_bias_desc(), eng);
      memory dyW(bwdWeights.diff_dst_desc(), eng), xW(bwdWeights.src_desc(), eng);
      for (memory* m : {&x, &w, &b, &dy, &dyW, &xW}) {
        auto* p = static_cast<float*>(m->get_data_handle());
        const size_t n = m->get_desc().get_size() / sizeof(float);
        for (size_t i = 0; i < n; i++) p[i] = 0.001f * static_cast<float>(i % 97);
      }
      convolution_forward f(fwd);
      convolution_backward_data bd(bwdData);
      convolution_backward_weights bw(bwdWeights);
      const double tf = best(
          [&] {
            f.execute(s, {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_BIAS, b}, {DNNL_ARG_DST, y}});
            s.wait();
          },
          50);
      const double td = best(
          [&] {
            bd.execute(s, {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DIFF_SRC, dx}});
            s.wait();
          },
          50);
      const double tw = best(
          [&] {
            bw.execute(s, {{DNNL_ARG_SRC, xW},
                           {DNNL_ARG_DIFF_DST, dyW},
                           {DNNL_ARG_DIFF_WEIGHTS, dw},
                           {DNNL_ARG_DIFF_BIAS, db}});
            s.wait();
          },
          50);
      std::printf("%-6d %-8s %10.3f %10.3f %10.3f %10.3f  (src %s, impl %s / %s / %s)\n", batch,
                  blocked ? "any" : "nhwc", tf * 1e3, td * 1e3, tw * 1e3, (tf + td + tw) * 1e3,
                  fwd.src_desc() == memory::desc(src, f32, tag::nhwc) ? "nhwc" : "blocked", fwd.impl_info_str(),
                  bwdData.impl_info_str(), bwdWeights.impl_info_str());
    }
  }
}
