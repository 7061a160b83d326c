// The native training loop's kernels beyond convolutions, pools and dense products
// (training.cc): the SGD step, the sigmoid and squared-error losses, dropout with seeded
// masks, average pools, layer and batch normalization and embeddings. Each computes what
// the tfjs op it stands for computes (packages/ml/src/native-layers.test.ts checks them
// against tfjs), in one pass over row-major buffers the loop allocates once.

#include "layers.h"


#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "dense-gemm.h"
#include "napi-args.h"

namespace tessera {
namespace {

// Reads a call's arguments in order; after the first bad one (an exception is pending)
// every further read returns an empty value and failed() is true, so a kernel runs only
// on arguments that were all checked.
class ArgReader {
 public:
  ArgReader(napi_env env, napi_callback_info info, size_t count) : env_(env), args_(count) {
    failed_ = !getArgs(env, info, count, args_.data());
  }

  bool failed() const { return failed_; }

  // A Float32Array of exactly `length` values.
  float* floats(size_t index, int64_t length, const char* name) {
    FloatView view;
    if (failed_) return nullptr;
    if (!floatView(env_, args_[index], &view, name)) return fail();
    if (static_cast<int64_t>(view.length) != length) {
      throwError(env_, name);
      return fail();
    }
    return view.data;
  }

  // A Float32Array of any length, written to *length (0 after a failure).
  float* floatsOfAnyLength(size_t index, int64_t* length, const char* name) {
    FloatView view;
    *length = 0;
    if (failed_) return nullptr;
    if (!floatView(env_, args_[index], &view, name)) return fail();
    *length = static_cast<int64_t>(view.length);
    return view.data;
  }

  // floats(), or nullptr without failing where the argument is null or undefined.
  float* optionalFloats(size_t index, int64_t length, const char* name) {
    if (failed_) return nullptr;
    napi_valuetype type;
    napi_typeof(env_, args_[index], &type);
    if (type == napi_null || type == napi_undefined) return nullptr;
    return floats(index, length, name);
  }

  uint8_t* bytes(size_t index, int64_t length, const char* name) {
    uint8_t* data = nullptr;
    size_t actual = 0;
    if (failed_) return nullptr;
    if (!typedView(env_, args_[index], napi_uint8_array, &data, &actual, name)) return failBytes();
    if (static_cast<int64_t>(actual) != length) {
      throwError(env_, name);
      return failBytes();
    }
    return data;
  }

  double* doubles(size_t index, size_t length, const char* name) {
    double* data = nullptr;
    size_t actual = 0;
    if (failed_) return nullptr;
    if (!typedView(env_, args_[index], napi_float64_array, &data, &actual, name) || actual != length) {
      if (!failed_ && actual != length) throwError(env_, name);
      failed_ = true;
      return nullptr;
    }
    return data;
  }

  // An Int32Array of `count` sizes, each at least `minimum`.
  std::vector<int> sizes(size_t index, size_t count, int minimum = 1) {
    std::vector<int> values;
    if (failed_) return std::vector<int>(count, minimum);
    if (!intList(env_, args_[index], &values, count)) {
      failed_ = true;
      return std::vector<int>(count, minimum);
    }
    for (int v : values) {
      if (v < minimum) {
        throwError(env_, "a size is out of range");
        failed_ = true;
        return std::vector<int>(count, minimum);
      }
    }
    return values;
  }

  // Pool sizes as readPoolGeometry reads them.
  PoolGeometry pool(size_t index) {
    PoolGeometry g{};
    if (failed_) return g;
    if (!readPoolGeometry(env_, args_[index], &g)) failed_ = true;
    return g;
  }

  double number(size_t index) {
    double value = 0;
    if (failed_) return 0;
    if (napi_get_value_double(env_, args_[index], &value) != napi_ok || !std::isfinite(value)) {
      throwError(env_, "expected a finite number");
      failed_ = true;
    }
    return value;
  }

  // Throws `message` (once) and marks the call failed, e.g. for a value found bad in the data.
  void reject(const char* message) {
    if (!failed_) throwError(env_, message);
    failed_ = true;
  }

 private:
  float* fail() {
    failed_ = true;
    return nullptr;
  }
  uint8_t* failBytes() {
    failed_ = true;
    return nullptr;
  }

  napi_env env_;
  std::vector<napi_value> args_;
  bool failed_ = false;
};

// Keras' clip of probabilities in the losses (packages/ml/src/losses.ts).
constexpr float kProbabilityEpsilon = 1e-7f;
constexpr float kProbabilityCeiling = 1.0f - 1e-7f;

TESSERA_CLONES
void sgdStep(float* w, float* g, const float* anchor, int64_t n, float learningRate, float mu) {
  if (anchor != nullptr) {
    for (int64_t i = 0; i < n; i++) g[i] += (w[i] - anchor[i]) * mu;
  }
  const float step = -learningRate;
  for (int64_t i = 0; i < n; i++) w[i] += step * g[i];
}

// sgdStep(w, g, anchor | null, learningRate, mu): the loop's one SGD step on a weight.
// With an anchor (FedProx), g += mu (w - anchor) first, from the weights before the step;
// then w += (-learningRate) g, as tfjs's SGD optimizer computes it.
napi_value SgdStep(napi_env env, napi_callback_info info) {
  ArgReader a(env, info, 5);
  int64_t n = 0;
  float* w = a.floatsOfAnyLength(0, &n, "w must be a Float32Array");
  float* g = a.floats(1, n, "g must be a Float32Array of w's size");
  float* anchor = a.optionalFloats(2, n, "anchor must be a Float32Array of w's size or null");
  const float learningRate = static_cast<float>(a.number(3));
  const float mu = static_cast<float>(a.number(4));
  if (a.failed()) return nullptr;
  sgdStep(w, g, anchor, n, learningRate, mu);
  return nullptr;
}

// sigmoidCrossEntropy(logits, targets, probabilities, dlogits, out: Float64Array(2)):
// p = sigmoid(logit) into probabilities, out = [mean clipped binary cross-entropy, correct
// (p >= 1/2 on the target's side)], dlogits = the gradient of the mean loss: (p - t) / n
// where p is inside the clip, 0 where the clip holds it (as tfjs differentiates clipByValue).
napi_value SigmoidCrossEntropy(napi_env env, napi_callback_info info) {
  ArgReader a(env, info, 5);
  int64_t n = 0;
  const float* logits = a.floatsOfAnyLength(0, &n, "logits must be a Float32Array");
  float* targets = a.floats(1, n, "targets must be a Float32Array of the logits' size");
  float* probabilities = a.floats(2, n, "probabilities must be a Float32Array of the logits' size");
  float* dlogits = a.floats(3, n, "dlogits must be a Float32Array of the logits' size");
  double* out = a.doubles(4, 2, "out must be a Float64Array(2)");
  if (a.failed()) return nullptr;
  if (n < 1) {
    a.reject("sigmoidCrossEntropy: no examples");
    return nullptr;
  }
  const float inverseCount = 1.0f / static_cast<float>(n);
  double lossSum = 0;
  int64_t correct = 0;
  for (int64_t i = 0; i < n; i++) {
    const float t = targets[i];
    const float p = 1.0f / (1.0f + std::exp(-logits[i]));
    probabilities[i] = p;
    const float clipped = std::min(std::max(p, kProbabilityEpsilon), kProbabilityCeiling);
    lossSum -= t * std::log(static_cast<double>(clipped)) + (1.0 - t) * std::log(1.0 - clipped);
    if ((p >= 0.5f ? 1.0f : 0.0f) == t) correct++;
    const bool inRange = p >= kProbabilityEpsilon && p <= kProbabilityCeiling;
    dlogits[i] = inRange ? (p - t) * inverseCount : 0.0f;
  }
  out[0] = lossSum / static_cast<double>(n);
  out[1] = static_cast<double>(correct);
  return nullptr;
}

// meanSquaredError(predictions, targets, dpredictions, out: Float64Array(3)): out = [mean
// of (y' - y)^2, sum |y' - y|, sum (y' - y)^2], dpredictions = 2 (y' - y) / n.
napi_value MeanSquaredError(napi_env env, napi_callback_info info) {
  ArgReader a(env, info, 4);
  int64_t n = 0;
  const float* predictions = a.floatsOfAnyLength(0, &n, "predictions must be a Float32Array");
  float* targets = a.floats(1, n, "targets must be a Float32Array of the predictions' size");
  float* gradient = a.floats(2, n, "dpredictions must be a Float32Array of the predictions' size");
  double* out = a.doubles(3, 3, "out must be a Float64Array(3)");
  if (a.failed()) return nullptr;
  if (n < 1) {
    a.reject("meanSquaredError: no examples");
    return nullptr;
  }
  const float scale = 1.0f / static_cast<float>(n);
  double absoluteSum = 0, squaredSum = 0;
  for (int64_t i = 0; i < n; i++) {
    const float error = predictions[i] - targets[i];
    absoluteSum += std::fabs(static_cast<double>(error));
    squaredSum += static_cast<double>(error) * error;
    gradient[i] = 2.0f * error * scale;
  }
  out[0] = squaredSum / static_cast<double>(n);
  out[1] = absoluteSum;
  out[2] = squaredSum;
  return nullptr;
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// dropoutForward(x, y, mask: Uint8Array, rate, seed, layer, step): element i is kept
// (mask 1, y = x / (1 - rate)) where u_i >= rate, dropped (mask 0, y = 0) otherwise, with
// u_i = the top 24 bits of splitmix64(key + i) / 2^24 and key = splitmix64(splitmix64(
// splitmix64(seed) ^ layer) ^ step): a mask is a function of (seed, layer, step) alone.
napi_value DropoutForward(napi_env env, napi_callback_info info) {
  ArgReader a(env, info, 7);
  int64_t n = 0;
  const float* x = a.floatsOfAnyLength(0, &n, "x must be a Float32Array");
  float* y = a.floats(1, n, "y must be a Float32Array of x's size");
  uint8_t* mask = a.bytes(2, n, "mask must be a Uint8Array of x's size");
  const double rate = a.number(3);
  const double seed = a.number(4), layer = a.number(5), step = a.number(6);
  if (a.failed()) return nullptr;
  if (!(rate >= 0 && rate < 1)) {
    a.reject("rate must be in [0, 1)");
    return nullptr;
  }
  const uint64_t key = splitmix64(splitmix64(splitmix64(static_cast<uint64_t>(static_cast<int64_t>(seed))) ^
                                             static_cast<uint64_t>(layer)) ^
                                  static_cast<uint64_t>(step));
  // As tfjs scales: x * (1 / keepProbability), keepProbability a float32.
  const float scale = 1.0f / static_cast<float>(1.0 - rate);
  const float threshold = static_cast<float>(rate);
  for (int64_t i = 0; i < n; i++) {
    const float u = static_cast<float>(splitmix64(key + static_cast<uint64_t>(i)) >> 40) * (1.0f / 16777216.0f);
    const bool keep = u >= threshold;
    mask[i] = keep ? 1 : 0;
    y[i] = keep ? x[i] * scale : 0.0f;
  }
  return nullptr;
}

// dropoutBackward(dy, mask, dx, rate): dx = dy / (1 - rate) where kept, 0 where dropped.
napi_value DropoutBackward(napi_env env, napi_callback_info info) {
  ArgReader a(env, info, 4);
  int64_t n = 0;
  const float* dy = a.floatsOfAnyLength(0, &n, "dy must be a Float32Array");
  uint8_t* mask = a.bytes(1, n, "mask must be a Uint8Array of dy's size");
  float* dx = a.floats(2, n, "dx must be a Float32Array of dy's size");
  const double rate = a.number(3);
  if (a.failed()) return nullptr;
  const float scale = 1.0f / static_cast<float>(1.0 - rate);
  for (int64_t i = 0; i < n; i++) dx[i] = mask[i] != 0 ? dy[i] * scale : 0.0f;
  return nullptr;
}

// globalAveragePoolForward(x, y, sizes = [batch, positions, channels]): y[b, c] = the mean
// over positions of x[b, p, c] (GlobalAveragePooling1D over steps, 2D over height x width).
napi_value GlobalAveragePoolForward(napi_env env, napi_callback_info info) {
  ArgReader a(env, info, 3);
  const std::vector<int> s = a.sizes(2, 3);
  const int64_t batch = s[0], positions = s[1], channels = s[2];
  const float* x = a.floats(0, batch * positions * channels, "x has the wrong size");
  float* y = a.floats(1, batch * channels, "y has the wrong size");
  if (a.failed()) return nullptr;
  const float count = static_cast<float>(positions);
  for (int64_t b = 0; b < batch; b++) {
    float* row = y + b * channels;
    std::fill(row, row + channels, 0.0f);
    for (int64_t p = 0; p < positions; p++) {
      const float* in = x + (b * positions + p) * channels;
      for (int64_t c = 0; c < channels; c++) row[c] += in[c];
    }
    for (int64_t c = 0; c < channels; c++) row[c] /= count;
  }
  return nullptr;
}

// globalAveragePoolBackward(dy, dx, sizes): dx[b, p, c] = dy[b, c] / positions.
napi_value GlobalAveragePoolBackward(napi_env env, napi_callback_info info) {
  ArgReader a(env, info, 3);
  const std::vector<int> s = a.sizes(2, 3);
  const int64_t batch = s[0], positions = s[1], channels = s[2];
  const float* dy = a.floats(0, batch * channels, "dy has the wrong size");
  float* dx = a.floats(1, batch * positions * channels, "dx has the wrong size");
  if (a.failed()) return nullptr;
  const float count = static_cast<float>(positions);
  for (int64_t b = 0; b < batch; b++) {
    for (int64_t p = 0; p < positions; p++) {
      float* out = dx + (b * positions + p) * channels;
      for (int64_t c = 0; c < channels; c++) out[c] = dy[b * channels + c] / count;
    }
  }
  return nullptr;
}

// The window of output (oh, ow) clipped to the input: [rowStart, rowEnd) x [colStart, colEnd).
struct Window {
  int rowStart, rowEnd, colStart, colEnd;
  int size() const { return (rowEnd - rowStart) * (colEnd - colStart); }
};

Window windowOf(const PoolGeometry& g, int oh, int ow) {
  const int top = oh * g.strideHeight - g.padTop, left = ow * g.strideWidth - g.padLeft;
  return Window{std::max(0, top), std::min(g.inHeight, top + g.filterHeight), std::max(0, left),
                std::min(g.inWidth, left + g.filterWidth)};
}

// averagePoolForward(x, y, sizes as maxPoolForward's): y = the mean of each window's
// values inside the input (the loop plans 'valid' pools only, where every window is whole).
napi_value AveragePoolForward(napi_env env, napi_callback_info info) {
  ArgReader a(env, info, 3);
  const PoolGeometry g = a.pool(2);
  const float* x = a.floats(0, g.inputSize(), "x has the wrong size");
  float* y = a.floats(1, g.outputSize(), "y has the wrong size");
  if (a.failed()) return nullptr;
  const int c = g.channels;
  float* out = y;
  for (int n = 0; n < g.batch; n++) {
    const float* image = x + int64_t{n} * g.inHeight * g.inWidth * c;
    for (int oh = 0; oh < g.outHeight; oh++) {
      for (int ow = 0; ow < g.outWidth; ow++, out += c) {
        const Window w = windowOf(g, oh, ow);
        std::fill(out, out + c, 0.0f);
        for (int ih = w.rowStart; ih < w.rowEnd; ih++) {
          for (int iw = w.colStart; iw < w.colEnd; iw++) {
            const float* values = image + (int64_t{ih} * g.inWidth + iw) * c;
            for (int k = 0; k < c; k++) out[k] += values[k];
          }
        }
        const float size = static_cast<float>(std::max(1, w.size()));
        for (int k = 0; k < c; k++) out[k] /= size;
      }
    }
  }
  return nullptr;
}

// averagePoolBackward(dy, dx, sizes): each window's gradient spread evenly over its values.
napi_value AveragePoolBackward(napi_env env, napi_callback_info info) {
  ArgReader a(env, info, 3);
  const PoolGeometry g = a.pool(2);
  const float* dy = a.floats(0, g.outputSize(), "dy has the wrong size");
  float* dx = a.floats(1, g.inputSize(), "dx has the wrong size");
  if (a.failed()) return nullptr;
  std::memset(dx, 0, sizeof(float) * static_cast<size_t>(g.inputSize()));
  const int c = g.channels;
  const float* in = dy;
  for (int n = 0; n < g.batch; n++) {
    float* image = dx + int64_t{n} * g.inHeight * g.inWidth * c;
    for (int oh = 0; oh < g.outHeight; oh++) {
      for (int ow = 0; ow < g.outWidth; ow++, in += c) {
        const Window w = windowOf(g, oh, ow);
        const float size = static_cast<float>(std::max(1, w.size()));
        for (int ih = w.rowStart; ih < w.rowEnd; ih++) {
          for (int iw = w.colStart; iw < w.colEnd; iw++) {
            float* values = image + (int64_t{ih} * g.inWidth + iw) * c;
            for (int k = 0; k < c; k++) values[k] += in[k] / size;
          }
        }
      }
    }
  }
  return nullptr;
}

// layerNormForward(x, gamma, beta, y, normalized, inverseStd, sizes = [rows, cols], epsilon):
// per row, y = (x - mean) / sqrt(variance + epsilon) * gamma + beta with the biased variance
// (tfjs's moments); normalized and inverseStd are kept for the backward pass.
napi_value LayerNormForward(napi_env env, napi_callback_info info) {
  ArgReader a(env, info, 8);
  const std::vector<int> s = a.sizes(6, 2);
  const int64_t rows = s[0], cols = s[1];
  const float* x = a.floats(0, rows * cols, "x has the wrong size");
  const float* gamma = a.floats(1, cols, "gamma has the wrong size");
  const float* beta = a.floats(2, cols, "beta has the wrong size");
  float* y = a.floats(3, rows * cols, "y has the wrong size");
  float* normalized = a.floats(4, rows * cols, "normalized has the wrong size");
  float* inverseStd = a.floats(5, rows, "inverseStd has the wrong size");
  const float epsilon = static_cast<float>(a.number(7));
  if (a.failed()) return nullptr;
  for (int64_t r = 0; r < rows; r++) {
    const float* in = x + r * cols;
    float mean = 0;
    for (int64_t c = 0; c < cols; c++) mean += in[c];
    mean /= static_cast<float>(cols);
    float variance = 0;
    for (int64_t c = 0; c < cols; c++) variance += (in[c] - mean) * (in[c] - mean);
    variance /= static_cast<float>(cols);
    const float inverse = 1.0f / std::sqrt(variance + epsilon);
    inverseStd[r] = inverse;
    float* xhat = normalized + r * cols;
    float* out = y + r * cols;
    for (int64_t c = 0; c < cols; c++) {
      xhat[c] = (in[c] - mean) * inverse;
      out[c] = xhat[c] * gamma[c] + beta[c];
    }
  }
  return nullptr;
}

// The arguments of layerNormBackward and batchNormBackward (dy, normalized, inverseStd,
// gamma, dx | null, dgamma, dbeta, sizes = [rows, cols]); inverseStd has one value per row
// (layer norm) or per column (batch norm). dgamma and dbeta are zeroed for the sums.
struct NormGradients {
  int64_t rows = 0, cols = 0;
  const float *dy = nullptr, *normalized = nullptr, *inverseStd = nullptr, *gamma = nullptr;
  float *dx = nullptr, *dgamma = nullptr, *dbeta = nullptr;
};

bool readNormGradients(ArgReader& a, bool statisticsPerRow, NormGradients* g) {
  const std::vector<int> s = a.sizes(7, 2);
  g->rows = s[0];
  g->cols = s[1];
  const int64_t size = g->rows * g->cols;
  g->dy = a.floats(0, size, "dy has the wrong size");
  g->normalized = a.floats(1, size, "normalized has the wrong size");
  g->inverseStd = a.floats(2, statisticsPerRow ? g->rows : g->cols, "inverseStd has the wrong size");
  g->gamma = a.floats(3, g->cols, "gamma has the wrong size");
  g->dx = a.optionalFloats(4, size, "dx has the wrong size");
  g->dgamma = a.floats(5, g->cols, "dgamma has the wrong size");
  g->dbeta = a.floats(6, g->cols, "dbeta has the wrong size");
  if (a.failed()) return false;
  std::fill(g->dgamma, g->dgamma + g->cols, 0.0f);
  std::fill(g->dbeta, g->dbeta + g->cols, 0.0f);
  return true;
}

// layerNormBackward(dy, normalized, inverseStd, gamma, dx | null, dgamma, dbeta, sizes):
// dgamma = sum_rows dy x̂, dbeta = sum_rows dy, and per row with g = dy gamma:
// dx = inverseStd (g - mean(g) - x̂ mean(g x̂)).
napi_value LayerNormBackward(napi_env env, napi_callback_info info) {
  ArgReader a(env, info, 8);
  NormGradients g;
  if (!readNormGradients(a, true, &g)) return nullptr;
  const int64_t rows = g.rows, cols = g.cols;
  const float *dy = g.dy, *normalized = g.normalized, *inverseStd = g.inverseStd, *gamma = g.gamma;
  float *dx = g.dx, *dgamma = g.dgamma, *dbeta = g.dbeta;
  for (int64_t r = 0; r < rows; r++) {
    const float* gradient = dy + r * cols;
    const float* xhat = normalized + r * cols;
    float sum = 0, dot = 0;
    for (int64_t c = 0; c < cols; c++) {
      dgamma[c] += gradient[c] * xhat[c];
      dbeta[c] += gradient[c];
      const float g = gradient[c] * gamma[c];
      sum += g;
      dot += g * xhat[c];
    }
    if (dx == nullptr) continue;
    const float meanG = sum / static_cast<float>(cols), meanGx = dot / static_cast<float>(cols);
    float* out = dx + r * cols;
    for (int64_t c = 0; c < cols; c++) out[c] = inverseStd[r] * (gradient[c] * gamma[c] - meanG - xhat[c] * meanGx);
  }
  return nullptr;
}

// batchNormForward(x, gamma, beta, movingMean, movingVariance, y, normalized, inverseStd,
// sizes = [rows, channels], epsilon, momentum): training mode, per channel over the rows
// (every position of every example): the batch's mean and biased variance normalize x,
// y = x̂ gamma + beta, and the moving statistics move as Keras moves them:
// moving -= (moving - batch value) (1 - momentum).
napi_value BatchNormForward(napi_env env, napi_callback_info info) {
  ArgReader a(env, info, 11);
  const std::vector<int> s = a.sizes(8, 2);
  const int64_t rows = s[0], channels = s[1];
  const float* x = a.floats(0, rows * channels, "x has the wrong size");
  const float* gamma = a.floats(1, channels, "gamma has the wrong size");
  const float* beta = a.floats(2, channels, "beta has the wrong size");
  float* movingMean = a.floats(3, channels, "movingMean has the wrong size");
  float* movingVariance = a.floats(4, channels, "movingVariance has the wrong size");
  float* y = a.floats(5, rows * channels, "y has the wrong size");
  float* normalized = a.floats(6, rows * channels, "normalized has the wrong size");
  float* inverseStd = a.floats(7, channels, "inverseStd has the wrong size");
  const float epsilon = static_cast<float>(a.number(9));
  const double momentum = a.number(10);
  if (a.failed()) return nullptr;
  std::vector<float> mean(static_cast<size_t>(channels), 0.0f), variance(static_cast<size_t>(channels), 0.0f);
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t c = 0; c < channels; c++) mean[c] += x[r * channels + c];
  }
  for (int64_t c = 0; c < channels; c++) mean[c] /= static_cast<float>(rows);
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t c = 0; c < channels; c++) {
      const float d = x[r * channels + c] - mean[c];
      variance[c] += d * d;
    }
  }
  const float decay = static_cast<float>(1.0 - momentum);
  for (int64_t c = 0; c < channels; c++) {
    variance[c] /= static_cast<float>(rows);
    inverseStd[c] = 1.0f / std::sqrt(variance[c] + epsilon);
    movingMean[c] -= (movingMean[c] - mean[c]) * decay;
    movingVariance[c] -= (movingVariance[c] - variance[c]) * decay;
  }
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t c = 0; c < channels; c++) {
      const int64_t i = r * channels + c;
      normalized[i] = (x[i] - mean[c]) * inverseStd[c];
      y[i] = normalized[i] * gamma[c] + beta[c];
    }
  }
  return nullptr;
}

// batchNormBackward(dy, normalized, inverseStd, gamma, dx | null, dgamma, dbeta, sizes):
// layerNormBackward's formula with the sums per channel over the rows.
napi_value BatchNormBackward(napi_env env, napi_callback_info info) {
  ArgReader a(env, info, 8);
  NormGradients g;
  if (!readNormGradients(a, false, &g)) return nullptr;
  const int64_t rows = g.rows, channels = g.cols;
  const float *dy = g.dy, *normalized = g.normalized, *inverseStd = g.inverseStd, *gamma = g.gamma;
  float *dx = g.dx, *dgamma = g.dgamma, *dbeta = g.dbeta;
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t c = 0; c < channels; c++) {
      const int64_t i = r * channels + c;
      dgamma[c] += dy[i] * normalized[i];
      dbeta[c] += dy[i];
    }
  }
  if (dx == nullptr) return nullptr;
  const float count = static_cast<float>(rows);
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t c = 0; c < channels; c++) {
      const int64_t i = r * channels + c;
      // sum_rows(dy gamma) = gamma dbeta, sum_rows(dy gamma x̂) = gamma dgamma.
      dx[i] = inverseStd[c] * gamma[c] * (dy[i] - dbeta[c] / count - normalized[i] * dgamma[c] / count);
    }
  }
  return nullptr;
}

// Token ids arrive as the loop's float features: exact integers up to 2^24, far above any
// vocabulary here. An id that is not an integer in 0..vocabulary-1 is an error, not a clamp.
bool validIds(const float* ids, int64_t count, int vocabulary) {
  for (int64_t i = 0; i < count; i++) {
    const float id = ids[i];
    if (!(id >= 0.0f && id < static_cast<float>(vocabulary)) || id != std::floor(id)) return false;
  }
  return true;
}

// embeddingForward(ids, table, y, sizes = [tokens, vocabulary, dim]): y[t] = table[ids[t]].
napi_value EmbeddingForward(napi_env env, napi_callback_info info) {
  ArgReader a(env, info, 4);
  const std::vector<int> s = a.sizes(3, 3);
  const int64_t tokens = s[0], dim = s[2];
  const int vocabulary = s[1];
  const float* ids = a.floats(0, tokens, "ids has the wrong size");
  const float* table = a.floats(1, int64_t{vocabulary} * dim, "table has the wrong size");
  float* y = a.floats(2, tokens * dim, "y has the wrong size");
  if (a.failed()) return nullptr;
  if (!validIds(ids, tokens, vocabulary)) {
    a.reject("a token id is not an integer in 0..vocabulary-1");
    return nullptr;
  }
  for (int64_t t = 0; t < tokens; t++) {
    std::memcpy(y + t * dim, table + static_cast<int64_t>(ids[t]) * dim, sizeof(float) * static_cast<size_t>(dim));
  }
  return nullptr;
}

// embeddingBackward(ids, dy, dtable, sizes): dtable = 0, then dtable[ids[t]] += dy[t].
napi_value EmbeddingBackward(napi_env env, napi_callback_info info) {
  ArgReader a(env, info, 4);
  const std::vector<int> s = a.sizes(3, 3);
  const int64_t tokens = s[0], dim = s[2];
  const int vocabulary = s[1];
  const float* ids = a.floats(0, tokens, "ids has the wrong size");
  const float* dy = a.floats(1, tokens * dim, "dy has the wrong size");
  float* dtable = a.floats(2, int64_t{vocabulary} * dim, "dtable has the wrong size");
  if (a.failed()) return nullptr;
  if (!validIds(ids, tokens, vocabulary)) {
    a.reject("a token id is not an integer in 0..vocabulary-1");
    return nullptr;
  }
  std::memset(dtable, 0, sizeof(float) * static_cast<size_t>(int64_t{vocabulary} * dim));
  for (int64_t t = 0; t < tokens; t++) {
    float* row = dtable + static_cast<int64_t>(ids[t]) * dim;
    const float* gradient = dy + t * dim;
    for (int64_t d = 0; d < dim; d++) row[d] += gradient[d];
  }
  return nullptr;
}

// addInto(a, b, out): out = a + b (a residual connection); out may be a or b.
napi_value AddInto(napi_env env, napi_callback_info info) {
  ArgReader a(env, info, 3);
  int64_t n = 0;
  const float* x = a.floatsOfAnyLength(0, &n, "a must be a Float32Array");
  const float* y = a.floats(1, n, "b must be a Float32Array of a's size");
  float* out = a.floats(2, n, "out must be a Float32Array of a's size");
  if (a.failed()) return nullptr;
  for (int64_t i = 0; i < n; i++) out[i] = x[i] + y[i];
  return nullptr;
}

// tokenPositionEmbeddingForward(ids, tokens, positions, y, sizes = [batch, length,
// vocabulary, dim]): y[b, t] = tokens[ids[b, t]] + positions[t].
napi_value TokenPositionEmbeddingForward(napi_env env, napi_callback_info info) {
  ArgReader a(env, info, 5);
  const std::vector<int> s = a.sizes(4, 4);
  const int64_t batch = s[0], length = s[1], dim = s[3];
  const int vocabulary = s[2];
  const float* ids = a.floats(0, batch * length, "ids has the wrong size");
  const float* tokens = a.floats(1, int64_t{vocabulary} * dim, "tokens has the wrong size");
  const float* positions = a.floats(2, length * dim, "positions has the wrong size");
  float* y = a.floats(3, batch * length * dim, "y has the wrong size");
  if (a.failed()) return nullptr;
  if (!validIds(ids, batch * length, vocabulary)) {
    a.reject("a token id is not an integer in 0..vocabulary-1");
    return nullptr;
  }
  for (int64_t b = 0; b < batch; b++) {
    for (int64_t t = 0; t < length; t++) {
      const float* token = tokens + static_cast<int64_t>(ids[b * length + t]) * dim;
      const float* position = positions + t * dim;
      float* out = y + (b * length + t) * dim;
      for (int64_t d = 0; d < dim; d++) out[d] = token[d] + position[d];
    }
  }
  return nullptr;
}

// tokenPositionEmbeddingBackward(ids, dy, dtokens, dpositions, sizes): dtokens[id] = the
// sum of dy where that id stands, dpositions[t] = the sum over the batch of dy[b, t].
napi_value TokenPositionEmbeddingBackward(napi_env env, napi_callback_info info) {
  ArgReader a(env, info, 5);
  const std::vector<int> s = a.sizes(4, 4);
  const int64_t batch = s[0], length = s[1], dim = s[3];
  const int vocabulary = s[2];
  const float* ids = a.floats(0, batch * length, "ids has the wrong size");
  const float* dy = a.floats(1, batch * length * dim, "dy has the wrong size");
  float* dtokens = a.floats(2, int64_t{vocabulary} * dim, "dtokens has the wrong size");
  float* dpositions = a.floats(3, length * dim, "dpositions has the wrong size");
  if (a.failed()) return nullptr;
  if (!validIds(ids, batch * length, vocabulary)) {
    a.reject("a token id is not an integer in 0..vocabulary-1");
    return nullptr;
  }
  std::memset(dtokens, 0, sizeof(float) * static_cast<size_t>(int64_t{vocabulary} * dim));
  std::memset(dpositions, 0, sizeof(float) * static_cast<size_t>(length * dim));
  for (int64_t b = 0; b < batch; b++) {
    for (int64_t t = 0; t < length; t++) {
      const float* gradient = dy + (b * length + t) * dim;
      float* token = dtokens + static_cast<int64_t>(ids[b * length + t]) * dim;
      float* position = dpositions + t * dim;
      for (int64_t d = 0; d < dim; d++) {
        token[d] += gradient[d];
        position[d] += gradient[d];
      }
    }
  }
  return nullptr;
}

// Multi-head scaled dot-product self-attention on projections laid out [batch * length,
// heads * headDim] (each head a column block, as the Dense projections write them): per
// example and head, P = softmax(Q K^T / sqrt(headDim)) row-wise, out = P V, in the same
// layout. The products are OpenBLAS SGEMMs on strided views: no transposes are copied.
struct AttentionShape {
  int64_t batch, length, heads, headDim;
  int64_t width() const { return heads * headDim; }
  int64_t rows() const { return batch * length; }
  int64_t probabilities() const { return batch * heads * length * length; }
};

AttentionShape attentionShape(ArgReader& a, size_t index) {
  const std::vector<int> s = a.sizes(index, 4);
  return AttentionShape{s[0], s[1], s[2], s[3]};
}

// attentionForward(q, k, v, probabilities, out, sizes = [batch, length, heads, headDim], scale).
napi_value AttentionForward(napi_env env, napi_callback_info info) {
  ArgReader a(env, info, 7);
  const AttentionShape g = attentionShape(a, 5);
  const int64_t size = g.rows() * g.width();
  const float* q = a.floats(0, size, "q has the wrong size");
  const float* k = a.floats(1, size, "k has the wrong size");
  const float* v = a.floats(2, size, "v has the wrong size");
  float* probabilities = a.floats(3, g.probabilities(), "probabilities has the wrong size");
  float* out = a.floats(4, size, "out has the wrong size");
  const float scale = static_cast<float>(a.number(6));
  if (a.failed()) return nullptr;
  const int L = static_cast<int>(g.length), hd = static_cast<int>(g.headDim), d = static_cast<int>(g.width());
  for (int64_t b = 0; b < g.batch; b++) {
    for (int64_t h = 0; h < g.heads; h++) {
      const int64_t at = b * g.length * g.width() + h * g.headDim;
      float* p = probabilities + (b * g.heads + h) * g.length * g.length;
      denseGemm(false, true, L, L, hd, scale, q + at, d, k + at, d, 0.0f, p, L);
      for (int i = 0; i < L; i++) {
        float* row = p + int64_t{i} * L;
        float max = row[0];
        for (int j = 1; j < L; j++) max = std::max(max, row[j]);
        float sum = 0;
        for (int j = 0; j < L; j++) {
          row[j] = std::exp(row[j] - max);
          sum += row[j];
        }
        for (int j = 0; j < L; j++) row[j] /= sum;
      }
      denseGemm(false, false, L, hd, L, 1.0f, p, L, v + at, d, 0.0f, out + at, d);
    }
  }
  return nullptr;
}

// attentionBackward(q, k, v, probabilities, dout, dq, dk, dv, sizes, scale): dV = P^T dOut,
// dS = P (dOut V^T - rowsum(P dOut V^T)) scale, dQ = dS K, dK = dS^T Q.
napi_value AttentionBackward(napi_env env, napi_callback_info info) {
  ArgReader a(env, info, 10);
  const AttentionShape g = attentionShape(a, 8);
  const int64_t size = g.rows() * g.width();
  const float* q = a.floats(0, size, "q has the wrong size");
  const float* k = a.floats(1, size, "k has the wrong size");
  const float* v = a.floats(2, size, "v has the wrong size");
  const float* probabilities = a.floats(3, g.probabilities(), "probabilities has the wrong size");
  const float* dout = a.floats(4, size, "dout has the wrong size");
  float* dq = a.floats(5, size, "dq has the wrong size");
  float* dk = a.floats(6, size, "dk has the wrong size");
  float* dv = a.floats(7, size, "dv has the wrong size");
  const float scale = static_cast<float>(a.number(9));
  if (a.failed()) return nullptr;
  const int L = static_cast<int>(g.length), hd = static_cast<int>(g.headDim), d = static_cast<int>(g.width());
  std::vector<float> scores(static_cast<size_t>(L) * L);
  float* ds = scores.data();
  for (int64_t b = 0; b < g.batch; b++) {
    for (int64_t h = 0; h < g.heads; h++) {
      const int64_t at = b * g.length * g.width() + h * g.headDim;
      const float* p = probabilities + (b * g.heads + h) * g.length * g.length;
      denseGemm(true, false, L, hd, L, 1.0f, p, L, dout + at, d, 0.0f, dv + at, d);
      denseGemm(false, true, L, L, hd, 1.0f, dout + at, d, v + at, d, 0.0f, ds, L);
      for (int i = 0; i < L; i++) {
        float* row = ds + int64_t{i} * L;
        const float* pRow = p + int64_t{i} * L;
        float dot = 0;
        for (int j = 0; j < L; j++) dot += row[j] * pRow[j];
        for (int j = 0; j < L; j++) row[j] = pRow[j] * (row[j] - dot) * scale;
      }
      denseGemm(false, false, L, hd, L, 1.0f, ds, L, k + at, d, 0.0f, dq + at, d);
      denseGemm(true, false, L, hd, L, 1.0f, ds, L, q + at, d, 0.0f, dk + at, d);
    }
  }
  return nullptr;
}

}  // namespace

void defineLayerFunctions(napi_env env, napi_value exports) {
  const napi_property_descriptor properties[] = {
      {"sgdStep", nullptr, SgdStep, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"sigmoidCrossEntropy", nullptr, SigmoidCrossEntropy, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"meanSquaredError", nullptr, MeanSquaredError, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"dropoutForward", nullptr, DropoutForward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"dropoutBackward", nullptr, DropoutBackward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"globalAveragePoolForward", nullptr, GlobalAveragePoolForward, nullptr, nullptr, nullptr, napi_default,
       nullptr},
      {"globalAveragePoolBackward", nullptr, GlobalAveragePoolBackward, nullptr, nullptr, nullptr, napi_default,
       nullptr},
      {"averagePoolForward", nullptr, AveragePoolForward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"averagePoolBackward", nullptr, AveragePoolBackward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"layerNormForward", nullptr, LayerNormForward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"layerNormBackward", nullptr, LayerNormBackward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"batchNormForward", nullptr, BatchNormForward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"batchNormBackward", nullptr, BatchNormBackward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"embeddingForward", nullptr, EmbeddingForward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"embeddingBackward", nullptr, EmbeddingBackward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"addInto", nullptr, AddInto, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"tokenPositionEmbeddingForward", nullptr, TokenPositionEmbeddingForward, nullptr, nullptr, nullptr,
       napi_default, nullptr},
      {"tokenPositionEmbeddingBackward", nullptr, TokenPositionEmbeddingBackward, nullptr, nullptr, nullptr,
       napi_default, nullptr},
      {"attentionForward", nullptr, AttentionForward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"attentionBackward", nullptr, AttentionBackward, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(properties) / sizeof(properties[0]), properties);
}

}  // namespace tessera
