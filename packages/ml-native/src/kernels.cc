// Native convolution and matrix-product kernels for tfjs's WebAssembly backend in Node.
//
// Every function reads and writes Float32Array views of the WebAssembly memory that tfjs
// keeps its tensors in, so nothing is copied in or out: the JavaScript side allocates the
// output tensor, takes views after the allocation (growing the memory detaches older
// views) and calls in synchronously. Layouts are tfjs's: NHWC activations, HWIO filters,
// row-major matrices.
//
// A convolution is im2col + one SGEMM per chunk of output positions (the formulation
// PyTorch's CPU convolution without oneDNN uses as well); the products run on OpenBLAS,
// which uses every core it is allowed (setThreads).

#include <cblas.h>

#include "napi-args.h"
#include "shapes.h"
#include "layers.h"
#include "training.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

extern "C" {
// Declared by OpenBLAS's cblas.h in most builds, but not in all: declared here too.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
char* openblas_get_config(void);
char* openblas_get_corename(void);
}

namespace tessera {

// columns[r - first, (kh, kw, ci)] = x at the input position that tap (kh, kw, ci) reads
// for output position r = (n, oh, ow); zero where it falls in the padding.
TESSERA_CLONES
void im2col(const float* x, const ConvGeometry& g, int64_t first, int64_t count, float* columns) {
  const int64_t taps = g.taps();
  const int ci = g.inChannels;
  for (int64_t i = 0; i < count; i++) {
    const int64_t r = first + i;
    const int ow = static_cast<int>(r % g.outWidth);
    const int oh = static_cast<int>((r / g.outWidth) % g.outHeight);
    const int64_t n = r / (int64_t{g.outWidth} * g.outHeight);
    float* out = columns + i * taps;
    for (int kh = 0; kh < g.filterHeight; kh++) {
      const int ih = oh * g.strideHeight - g.padTop + kh * g.dilationHeight;
      if (ih < 0 || ih >= g.inHeight) {
        std::memset(out, 0, sizeof(float) * g.filterWidth * ci);
        out += int64_t{g.filterWidth} * ci;
        continue;
      }
      const float* row = x + ((n * g.inHeight + ih) * g.inWidth) * ci;
      if (ci == 1) {
        // One channel (a first layer on images): single floats, not memcpy calls.
        for (int kw = 0; kw < g.filterWidth; kw++) {
          const int iw = ow * g.strideWidth - g.padLeft + kw * g.dilationWidth;
          *out++ = (iw < 0 || iw >= g.inWidth) ? 0.0f : row[iw];
        }
        continue;
      }
      for (int kw = 0; kw < g.filterWidth; kw++, out += ci) {
        const int iw = ow * g.strideWidth - g.padLeft + kw * g.dilationWidth;
        if (iw < 0 || iw >= g.inWidth) {
          std::memset(out, 0, sizeof(float) * ci);
        } else {
          std::memcpy(out, row + int64_t{iw} * ci, sizeof(float) * ci);
        }
      }
    }
  }
}

// The adjoint of im2col: adds each column entry back onto the input position it was read from.
TESSERA_CLONES
void col2imAdd(const float* columns, const ConvGeometry& g, int64_t first, int64_t count, float* dx) {
  const int64_t taps = g.taps();
  const int ci = g.inChannels;
  for (int64_t i = 0; i < count; i++) {
    const int64_t r = first + i;
    const int ow = static_cast<int>(r % g.outWidth);
    const int oh = static_cast<int>((r / g.outWidth) % g.outHeight);
    const int64_t n = r / (int64_t{g.outWidth} * g.outHeight);
    const float* in = columns + i * taps;
    for (int kh = 0; kh < g.filterHeight; kh++) {
      const int ih = oh * g.strideHeight - g.padTop + kh * g.dilationHeight;
      if (ih < 0 || ih >= g.inHeight) {
        in += int64_t{g.filterWidth} * ci;
        continue;
      }
      float* row = dx + ((n * g.inHeight + ih) * g.inWidth) * ci;
      for (int kw = 0; kw < g.filterWidth; kw++, in += ci) {
        const int iw = ow * g.strideWidth - g.padLeft + kw * g.dilationWidth;
        if (iw < 0 || iw >= g.inWidth) continue;
        float* target = row + int64_t{iw} * ci;
        for (int c = 0; c < ci; c++) target[c] += in[c];
      }
    }
  }
}

// A 1x1, stride-1, unpadded convolution reads x as the columns matrix itself.
bool isPointwise(const ConvGeometry& g) {
  return g.filterHeight == 1 && g.filterWidth == 1 && g.strideHeight == 1 && g.strideWidth == 1 &&
         g.padTop == 0 && g.padLeft == 0 && g.outHeight == g.inHeight && g.outWidth == g.inWidth;
}

// y[rows, co] = columns[rows, taps] x filter[taps, co]
void conv2dForward(const float* x, const float* filter, float* y, const ConvGeometry& g) {
  const int64_t taps = g.taps();
  const int co = g.outChannels;
  if (isPointwise(g)) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(g.rows()), co,
                static_cast<int>(taps), 1.0f, x, static_cast<int>(taps), filter, co, 0.0f, y, co);
    return;
  }
  const int64_t chunk = g.chunkRows();
  std::vector<float> columns(static_cast<size_t>(chunk * taps));
  for (int64_t first = 0; first < g.rows(); first += chunk) {
    const int64_t count = std::min(chunk, g.rows() - first);
    im2col(x, g, first, count, columns.data());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(count), co,
                static_cast<int>(taps), 1.0f, columns.data(), static_cast<int>(taps), filter, co, 0.0f,
                y + first * co, co);
  }
}

// dx = col2im(dy[rows, co] x filter[taps, co]^T)
void conv2dBackpropInput(const float* dy, const float* filter, float* dx, const ConvGeometry& g) {
  const int64_t taps = g.taps();
  const int co = g.outChannels;
  if (isPointwise(g)) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(g.rows()), static_cast<int>(taps),
                co, 1.0f, dy, co, filter, co, 0.0f, dx, static_cast<int>(taps));
    return;
  }
  std::memset(dx, 0, sizeof(float) * static_cast<size_t>(int64_t{g.batch} * g.inHeight * g.inWidth * g.inChannels));
  const int64_t chunk = g.chunkRows();
  std::vector<float> columns(static_cast<size_t>(chunk * taps));
  for (int64_t first = 0; first < g.rows(); first += chunk) {
    const int64_t count = std::min(chunk, g.rows() - first);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(count), static_cast<int>(taps), co,
                1.0f, dy + first * co, co, filter, co, 0.0f, columns.data(), static_cast<int>(taps));
    col2imAdd(columns.data(), g, first, count, dx);
  }
}

// dW[taps, co] = sum over chunks of columns[rows, taps]^T x dy[rows, co]
void conv2dBackpropFilter(const float* x, const float* dy, float* dw, const ConvGeometry& g) {
  const int64_t taps = g.taps();
  const int co = g.outChannels;
  if (isPointwise(g)) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(taps), co,
                static_cast<int>(g.rows()), 1.0f, x, static_cast<int>(taps), dy, co, 0.0f, dw, co);
    return;
  }
  const int64_t chunk = g.chunkRows();
  std::vector<float> columns(static_cast<size_t>(chunk * taps));
  for (int64_t first = 0; first < g.rows(); first += chunk) {
    const int64_t count = std::min(chunk, g.rows() - first);
    im2col(x, g, first, count, columns.data());
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(taps), co, static_cast<int>(count),
                1.0f, columns.data(), static_cast<int>(taps), dy + first * co, co, first == 0 ? 0.0f : 1.0f, dw,
                co);
  }
}

// dx of a max pool: each output's gradient goes to the first maximum of its window in
// row-major order (as tfjs's cpu backend does), accumulated where windows overlap. The
// channel loop is branch-free (selects, not jumps: which value wins is random data), and
// vectorises with AVX2 (5x faster than the x86-64 baseline build measured on fedavg-cnn's
// pools); target_clones builds both and picks at load time, so no CPU is left out.
TESSERA_CLONES
void maxPoolGrad(const float* x, const float* dy, float* dx, const PoolGeometry& g) {
  const int c = g.channels;
  std::memset(dx, 0, sizeof(float) * static_cast<size_t>(int64_t{g.batch} * g.inHeight * g.inWidth * c));
  std::vector<float> best(static_cast<size_t>(c));
  std::vector<int64_t> bestAt(static_cast<size_t>(c));
  const float* dyPixel = dy;
  for (int n = 0; n < g.batch; n++) {
    const int64_t image = int64_t{n} * g.inHeight * g.inWidth * c;
    for (int oh = 0; oh < g.outHeight; oh++) {
      const int rowStart = std::max(0, oh * g.strideHeight - g.padTop);
      const int rowEnd = std::min(g.inHeight, oh * g.strideHeight - g.padTop + g.filterHeight);
      for (int ow = 0; ow < g.outWidth; ow++, dyPixel += c) {
        const int colStart = std::max(0, ow * g.strideWidth - g.padLeft);
        const int colEnd = std::min(g.inWidth, ow * g.strideWidth - g.padLeft + g.filterWidth);
        std::fill(best.begin(), best.end(), -std::numeric_limits<float>::infinity());
        std::fill(bestAt.begin(), bestAt.end(), -1);
        for (int ih = rowStart; ih < rowEnd; ih++) {
          for (int iw = colStart; iw < colEnd; iw++) {
            const int64_t base = image + (int64_t{ih} * g.inWidth + iw) * c;
            const float* values = x + base;
            for (int k = 0; k < c; k++) {
              const bool greater = values[k] > best[k];
              best[k] = greater ? values[k] : best[k];
              bestAt[k] = greater ? base + k : bestAt[k];
            }
          }
        }
        for (int k = 0; k < c; k++) {
          if (bestAt[k] >= 0) dx[bestAt[k]] += dyPixel[k];
        }
      }
    }
  }
}

// out[c] = sum over r of x[r, c]: a sum over the leading axes of a row-major tensor (bias
// gradients: NHWC summed over N, H and W), accumulated in double per column.
TESSERA_CLONES
void columnSum(const float* x, float* out, int64_t rows, int64_t cols) {
  std::vector<double> sums(static_cast<size_t>(cols), 0.0);
  double* acc = sums.data();
  for (int64_t r = 0; r < rows; r++) {
    const float* row = x + r * cols;
    for (int64_t c = 0; c < cols; c++) acc[c] += row[c];
  }
  for (int64_t c = 0; c < cols; c++) out[c] = static_cast<float>(acc[c]);
}

// ---------------------------------------------------------------------------------------
// Node-API glue (argument checks in napi-args.h).

bool readGeometry(napi_env env, napi_value value, ConvGeometry* g) {
  std::vector<int> s;
  if (!intList(env, value, &s, 15)) return false;
  *g = ConvGeometry{s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], s[11], s[12], s[13], s[14]};
  for (int v : s) {
    if (v < 0) return throwError(env, "convolution sizes must not be negative");
  }
  if (g->strideHeight < 1 || g->strideWidth < 1 || g->dilationHeight < 1 || g->dilationWidth < 1) {
    return throwError(env, "strides and dilations must be at least 1");
  }
  // No consistency check between input and output sizes is needed for safety: im2col and
  // col2imAdd bounds-check every input position they touch, and every buffer's length is
  // checked against these sizes below.
  return true;
}

enum class ConvKind { Forward, BackpropInput, BackpropFilter };

// conv2d*(a, b, out, sizes): forward (x, filter, y), backpropInput (dy, filter, dx),
// backpropFilter (x, dy, dW).
template <ConvKind kind>
napi_value Conv(napi_env env, napi_callback_info info) {
  napi_value args[4];
  if (!getArgs(env, info, 4, args)) return nullptr;
  ConvGeometry g;
  FloatView a, b, out;
  if (!readGeometry(env, args[3], &g) || !floatView(env, args[0], &a, "first argument must be a Float32Array") ||
      !floatView(env, args[1], &b, "second argument must be a Float32Array") ||
      !floatView(env, args[2], &out, "third argument must be a Float32Array")) {
    return nullptr;
  }
  const int64_t inputSize = int64_t{g.batch} * g.inHeight * g.inWidth * g.inChannels;
  const int64_t filterSize = g.taps() * g.outChannels;
  const int64_t outputSize = g.rows() * g.outChannels;
  if (kind == ConvKind::Forward) {
    if (!checkLength(env, a, inputSize, "x has the wrong size") ||
        !checkLength(env, b, filterSize, "filter has the wrong size") ||
        !checkLength(env, out, outputSize, "y has the wrong size")) {
      return nullptr;
    }
    conv2dForward(a.data, b.data, out.data, g);
  } else if (kind == ConvKind::BackpropInput) {
    if (!checkLength(env, a, outputSize, "dy has the wrong size") ||
        !checkLength(env, b, filterSize, "filter has the wrong size") ||
        !checkLength(env, out, inputSize, "dx has the wrong size")) {
      return nullptr;
    }
    conv2dBackpropInput(a.data, b.data, out.data, g);
  } else {
    if (!checkLength(env, a, inputSize, "x has the wrong size") ||
        !checkLength(env, b, outputSize, "dy has the wrong size") ||
        !checkLength(env, out, filterSize, "dW has the wrong size")) {
      return nullptr;
    }
    conv2dBackpropFilter(a.data, b.data, out.data, g);
  }
  return nullptr;
}

// matMul(a, b, c, sizes = [batchA, batchB, m, n, k, transposeA, transposeB]): for each batch
// index i, c[i] = op(a[batchA == 1 ? 0 : i]) x op(b[batchB == 1 ? 0 : i]), op transposing
// where asked; c has max(batchA, batchB) matrices of m x n.
napi_value MatMul(napi_env env, napi_callback_info info) {
  napi_value args[4];
  if (!getArgs(env, info, 4, args)) return nullptr;
  std::vector<int> s;
  FloatView a, b, c;
  if (!intList(env, args[3], &s, 7) || !floatView(env, args[0], &a, "a must be a Float32Array") ||
      !floatView(env, args[1], &b, "b must be a Float32Array") ||
      !floatView(env, args[2], &c, "c must be a Float32Array")) {
    return nullptr;
  }
  const int batchA = s[0], batchB = s[1], m = s[2], n = s[3], k = s[4];
  const bool transposeA = s[5] != 0, transposeB = s[6] != 0;
  if (batchA < 1 || batchB < 1 || m < 0 || n < 0 || k < 0 || (batchA != batchB && batchA != 1 && batchB != 1)) {
    throwError(env, "matMul: batch sizes must be equal or one of them 1, sizes not negative");
    return nullptr;
  }
  const int batch = std::max(batchA, batchB);
  const int64_t aSize = int64_t{m} * k, bSize = int64_t{k} * n, cSize = int64_t{m} * n;
  if (!checkLength(env, a, aSize * batchA, "a has the wrong size") ||
      !checkLength(env, b, bSize * batchB, "b has the wrong size") ||
      !checkLength(env, c, cSize * batch, "c has the wrong size")) {
    return nullptr;
  }
  if (cSize == 0) return nullptr;
  if (k == 0) {
    std::fill(c.data, c.data + cSize * batch, 0.0f);
    return nullptr;
  }
  for (int i = 0; i < batch; i++) {
    cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                m, n, k, 1.0f, a.data + (batchA == 1 ? 0 : i * aSize), transposeA ? m : k,
                b.data + (batchB == 1 ? 0 : i * bSize), transposeB ? k : n, 0.0f, c.data + i * cSize, n);
  }
  return nullptr;
}

// maxPoolGrad(x, dy, dx, sizes = [batch, inHeight, inWidth, channels, filterHeight,
// filterWidth, outHeight, outWidth, strideHeight, strideWidth, padTop, padLeft])
napi_value MaxPoolGrad(napi_env env, napi_callback_info info) {
  napi_value args[4];
  if (!getArgs(env, info, 4, args)) return nullptr;
  PoolGeometry g;
  FloatView x, dy, dx;
  if (!readPoolGeometry(env, args[3], &g) || !floatView(env, args[0], &x, "x must be a Float32Array") ||
      !floatView(env, args[1], &dy, "dy must be a Float32Array") ||
      !floatView(env, args[2], &dx, "dx must be a Float32Array")) {
    return nullptr;
  }
  if (!checkLength(env, x, g.inputSize(), "x has the wrong size") ||
      !checkLength(env, dy, g.outputSize(), "dy has the wrong size") ||
      !checkLength(env, dx, g.inputSize(), "dx has the wrong size")) {
    return nullptr;
  }
  maxPoolGrad(x.data, dy.data, dx.data, g);
  return nullptr;
}

// columnSum(x, out, sizes = [rows, cols])
napi_value ColumnSum(napi_env env, napi_callback_info info) {
  napi_value args[3];
  if (!getArgs(env, info, 3, args)) return nullptr;
  std::vector<int> s;
  FloatView x, out;
  if (!intList(env, args[2], &s, 2) || !floatView(env, args[0], &x, "x must be a Float32Array") ||
      !floatView(env, args[1], &out, "out must be a Float32Array")) {
    return nullptr;
  }
  if (s[0] < 0 || s[1] < 0) {
    throwError(env, "sizes must not be negative");
    return nullptr;
  }
  if (!checkLength(env, x, int64_t{s[0]} * s[1], "x has the wrong size") ||
      !checkLength(env, out, s[1], "out has the wrong size")) {
    return nullptr;
  }
  columnSum(x.data, out.data, s[0], s[1]);
  return nullptr;
}

napi_value SetThreads(napi_env env, napi_callback_info info) {
  napi_value args[1];
  if (!getArgs(env, info, 1, args)) return nullptr;
  int32_t threads = 0;
  if (napi_get_value_int32(env, args[0], &threads) != napi_ok || threads < 1) {
    throwError(env, "setThreads: a positive integer is required");
    return nullptr;
  }
  openblas_set_num_threads(threads);
  setConvolutionThreads(threads);
  return nullptr;
}

napi_value GetThreads(napi_env env, napi_callback_info) {
  napi_value result;
  napi_create_int32(env, openblas_get_num_threads(), &result);
  return result;
}

napi_value BlasConfig(napi_env env, napi_callback_info) {
  napi_value result;
  const char* config = openblas_get_config();
  napi_create_string_utf8(env, config == nullptr ? "OpenBLAS" : config, NAPI_AUTO_LENGTH, &result);
  return result;
}

napi_value BlasCore(napi_env env, napi_callback_info) {
  napi_value result;
  const char* core = openblas_get_corename();
  napi_create_string_utf8(env, core == nullptr ? "unknown" : core, NAPI_AUTO_LENGTH, &result);
  return result;
}

napi_value Init(napi_env env, napi_value exports) {
  const napi_property_descriptor properties[] = {
      {"conv2d", nullptr, Conv<ConvKind::Forward>, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"conv2dBackpropInput", nullptr, Conv<ConvKind::BackpropInput>, nullptr, nullptr, nullptr, napi_default,
       nullptr},
      {"conv2dBackpropFilter", nullptr, Conv<ConvKind::BackpropFilter>, nullptr, nullptr, nullptr, napi_default,
       nullptr},
      {"matMul", nullptr, MatMul, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"maxPoolGrad", nullptr, MaxPoolGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"columnSum", nullptr, ColumnSum, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"setThreads", nullptr, SetThreads, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"getThreads", nullptr, GetThreads, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"blasConfig", nullptr, BlasConfig, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"blasCore", nullptr, BlasCore, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(properties) / sizeof(properties[0]), properties);
  defineTrainingFunctions(env, exports);
  defineLayerFunctions(env, exports);
  return exports;
}

}  // namespace tessera

NAPI_MODULE(NODE_GYP_MODULE_NAME, tessera::Init)
