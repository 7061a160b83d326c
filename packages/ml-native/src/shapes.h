// Shapes and kernels shared by the addon's source files (layouts as in kernels.cc: NHWC
// activations, HWIO filters, row-major matrices).
#pragma once

#include <algorithm>
#include <cstdint>

namespace tessera {

// The loops written here (not the products: OpenBLAS picks its own kernels) built twice,
// for AVX2 and for the x86-64 baseline, chosen when the addon loads (GCC, x86-64 only).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define TESSERA_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define TESSERA_CLONES
#endif

// Rows of im2col columns built per SGEMM: bounded so that the scratch matrix stays near
// 8 MiB whatever the filter size.
constexpr int64_t kColumnBudgetFloats = int64_t{2} << 20;

struct ConvGeometry {
  int batch, inHeight, inWidth, inChannels;
  int filterHeight, filterWidth, outChannels;
  int outHeight, outWidth;
  int strideHeight, strideWidth, dilationHeight, dilationWidth;
  int padTop, padLeft;

  int64_t taps() const { return int64_t{filterHeight} * filterWidth * inChannels; }
  int64_t rows() const { return int64_t{batch} * outHeight * outWidth; }
  int64_t chunkRows() const {
    return std::max<int64_t>(1, std::min(rows(), kColumnBudgetFloats / std::max<int64_t>(1, taps())));
  }
};

struct PoolGeometry {
  int batch, inHeight, inWidth, channels;
  int filterHeight, filterWidth, outHeight, outWidth;
  int strideHeight, strideWidth, padTop, padLeft;

  int64_t inputSize() const { return int64_t{batch} * inHeight * inWidth * channels; }
  int64_t outputSize() const { return int64_t{batch} * outHeight * outWidth * channels; }
};

void conv2dForward(const float* x, const float* filter, float* y, const ConvGeometry& g);
void conv2dBackpropInput(const float* dy, const float* filter, float* dx, const ConvGeometry& g);
void conv2dBackpropFilter(const float* x, const float* dy, float* dw, const ConvGeometry& g);
void columnSum(const float* x, float* out, int64_t rows, int64_t cols);

}  // namespace tessera
