// Layer kernels for @tessera/ml's native training loop (packages/ml/src/native-training.ts).
//
// A Sequential model of convolutions, max pools and dense layers takes one SGD step in
// about twenty calls into this file, on buffers the loop allocates once, instead of a few
// hundred tfjs operations with their tape, allocations and dispatch (about a fifth of a
// fedavg-cnn step at batch 10 went to that bookkeeping).
//
// Convolutions run on oneDNN where the addon was built with it (Debian: libdnnl-dev, the
// library PyTorch's CPU convolutions use): each layer's primitives are created once per
// batch size, with bias and ReLU fused into the forward pass. Elsewhere they run on
// im2col + OpenBLAS SGEMM (kernels.cc). Dense layers are SGEMMs (dense-gemm.h: oneDNN's where
// built, else OpenBLAS's) whose weight gradient can be accumulated straight into the weights
// (alpha = -learning rate, beta = 1): the SGD step without a gradient buffer, the weights read
// once instead of three times.
//
// Layouts are tfjs's, so weights move between the loop and a tfjs model as they are:
// NHWC activations, HWIO filters, [in, out] dense kernels, row-major everything.

#include "training.h"

#include <cblas.h>

#include "blas-threads.h"
#include "dense-gemm.h"
#include "napi-args.h"
#include "shapes.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#ifdef TESSERA_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

extern "C" char* openblas_get_corename(void);


namespace tessera {
namespace {

// Sizes of one convolution layer, in the order convLayerCreate takes them.
struct ConvLayerShape {
  int inHeight, inWidth, inChannels, filterHeight, filterWidth, outChannels, outHeight, outWidth;
  int strideHeight, strideWidth, padTop, padLeft, padBottom, padRight;

  ConvGeometry geometry(int batch) const {
    return ConvGeometry{batch,       inHeight,     inWidth,     inChannels, filterHeight, filterWidth, outChannels,
                        outHeight,   outWidth,     strideHeight, strideWidth, 1,          1,           padTop,
                        padLeft};
  }
  int64_t inputSize(int batch) const { return int64_t{batch} * inHeight * inWidth * inChannels; }
  int64_t outputSize(int batch) const { return int64_t{batch} * outHeight * outWidth * outChannels; }
  int64_t filterSize() const { return int64_t{filterHeight} * filterWidth * inChannels * outChannels; }
};

TESSERA_CLONES
void addBiasRelu(float* y, const float* bias, int64_t rows, int cols, bool relu) {
  for (int64_t r = 0; r < rows; r++) {
    float* row = y + r * cols;
    for (int c = 0; c < cols; c++) {
      const float v = row[c] + bias[c];
      row[c] = relu ? (v > 0.0f ? v : 0.0f) : v;
    }
  }
}

#ifdef TESSERA_DNNL

dnnl::engine& cpuEngine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::stream& cpuStream() {
  static dnnl::stream stream(cpuEngine());
  return stream;
}

// Weights in the layout a primitive chose (blocked, usually), next to the HWIO buffer the
// loop owns: reordered in before the primitive reads them, or out after it wrote them.
// Where the primitive takes HWIO itself, both are one memory and nothing is copied.
struct Relayout {
  dnnl::memory user;
  dnnl::memory chosen;
  std::optional<dnnl::reorder> reorder;

  Relayout(const dnnl::memory::desc& userDesc, const dnnl::memory::desc& chosenDesc, bool intoChosen)
      : user(userDesc, cpuEngine(), DNNL_MEMORY_NONE) {
    if (chosenDesc == userDesc) {
      chosen = user;
      return;
    }
    chosen = dnnl::memory(chosenDesc, cpuEngine());
    reorder = intoChosen ? dnnl::reorder(user, chosen) : dnnl::reorder(chosen, user);
  }

  void bind(const float* data) { user.set_data_handle(const_cast<float*>(data)); }
  void intoChosen() {
    if (reorder) reorder->execute(cpuStream(), user, chosen);
  }
  void outOfChosen() {
    if (reorder) reorder->execute(cpuStream(), chosen, user);
  }
};

// One convolution layer's three primitives (forward with bias and ReLU, gradient of the
// input, gradients of filter and bias) for one batch size.
class DnnlConvolution {
 public:
  DnnlConvolution(const ConvLayerShape& s, int batch, bool relu)
      : DnnlConvolution(s, batch, relu, descriptors(s, batch)) {}

  void forward(const float* x, const float* filter, const float* bias, float* y) {
    forwardFilter_.bind(filter);
    forwardFilter_.intoChosen();
    src_.set_data_handle(const_cast<float*>(x));
    bias_.set_data_handle(const_cast<float*>(bias));
    dst_.set_data_handle(y);
    forward_.execute(cpuStream(), {{DNNL_ARG_SRC, src_},
                                   {DNNL_ARG_WEIGHTS, forwardFilter_.chosen},
                                   {DNNL_ARG_BIAS, bias_},
                                   {DNNL_ARG_DST, dst_}});
    cpuStream().wait();
  }

  void backward(const float* x, const float* filter, const float* dy, float* dx, float* dw, float* db) {
    diffDst_.set_data_handle(const_cast<float*>(dy));
    if (dx != nullptr) {
      dataFilter_.bind(filter);
      dataFilter_.intoChosen();
      diffSrc_.set_data_handle(dx);
      backwardData_.execute(cpuStream(), {{DNNL_ARG_DIFF_DST, diffDst_},
                                          {DNNL_ARG_WEIGHTS, dataFilter_.chosen},
                                          {DNNL_ARG_DIFF_SRC, diffSrc_}});
    }
    src_.set_data_handle(const_cast<float*>(x));
    diffFilter_.bind(dw);
    diffBias_.set_data_handle(db);
    backwardWeights_.execute(cpuStream(), {{DNNL_ARG_SRC, src_},
                                           {DNNL_ARG_DIFF_DST, diffDst_},
                                           {DNNL_ARG_DIFF_WEIGHTS, diffFilter_.chosen},
                                           {DNNL_ARG_DIFF_BIAS, diffBias_}});
    diffFilter_.outOfChosen();
    cpuStream().wait();
  }

 private:
  struct Descriptors {
    dnnl::memory::desc src, dst, filter, anyFilter, bias;
    dnnl::memory::dims strides, padLeft, padRight;
  };

  static Descriptors descriptors(const ConvLayerShape& s, int batch) {
    using tag = dnnl::memory::format_tag;
    const auto f32 = dnnl::memory::data_type::f32;
    const dnnl::memory::dims filterDims{s.outChannels, s.inChannels, s.filterHeight, s.filterWidth};
    return Descriptors{
        dnnl::memory::desc({batch, s.inChannels, s.inHeight, s.inWidth}, f32, tag::nhwc),
        dnnl::memory::desc({batch, s.outChannels, s.outHeight, s.outWidth}, f32, tag::nhwc),
        dnnl::memory::desc(filterDims, f32, tag::hwio),
        dnnl::memory::desc(filterDims, f32, tag::any),
        dnnl::memory::desc({s.outChannels}, f32, tag::x),
        {s.strideHeight, s.strideWidth},
        {s.padTop, s.padLeft},
        {s.padBottom, s.padRight},
    };
  }

  static dnnl::primitive_attr reluAttr(bool relu) {
    dnnl::primitive_attr attr;
    if (relu) {
      dnnl::post_ops ops;
      ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
      attr.set_post_ops(ops);
    }
    return attr;
  }

  DnnlConvolution(const ConvLayerShape&, int, bool relu, const Descriptors& d)
      : forwardPd_(dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
                                                   dnnl::algorithm::convolution_direct, d.src, d.anyFilter, d.bias,
                                                   d.dst, d.strides, d.padLeft, d.padRight),
                   reluAttr(relu), cpuEngine()),
        backwardDataPd_(dnnl::convolution_backward_data::desc(dnnl::algorithm::convolution_direct, d.src,
                                                              d.anyFilter, d.dst, d.strides, d.padLeft, d.padRight),
                        cpuEngine(), forwardPd_),
        backwardWeightsPd_(dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, d.src,
                                                                    d.anyFilter, d.bias, d.dst, d.strides, d.padLeft,
                                                                    d.padRight),
                           cpuEngine(), forwardPd_),
        forward_(forwardPd_),
        backwardData_(backwardDataPd_),
        backwardWeights_(backwardWeightsPd_),
        src_(d.src, cpuEngine(), DNNL_MEMORY_NONE),
        dst_(d.dst, cpuEngine(), DNNL_MEMORY_NONE),
        diffSrc_(d.src, cpuEngine(), DNNL_MEMORY_NONE),
        diffDst_(d.dst, cpuEngine(), DNNL_MEMORY_NONE),
        bias_(d.bias, cpuEngine(), DNNL_MEMORY_NONE),
        diffBias_(d.bias, cpuEngine(), DNNL_MEMORY_NONE),
        forwardFilter_(d.filter, forwardPd_.weights_desc(), true),
        dataFilter_(d.filter, backwardDataPd_.weights_desc(), true),
        diffFilter_(d.filter, backwardWeightsPd_.diff_weights_desc(), false) {}

  dnnl::convolution_forward::primitive_desc forwardPd_;
  dnnl::convolution_backward_data::primitive_desc backwardDataPd_;
  dnnl::convolution_backward_weights::primitive_desc backwardWeightsPd_;
  dnnl::convolution_forward forward_;
  dnnl::convolution_backward_data backwardData_;
  dnnl::convolution_backward_weights backwardWeights_;
  dnnl::memory src_, dst_, diffSrc_, diffDst_, bias_, diffBias_;
  Relayout forwardFilter_, dataFilter_, diffFilter_;
};

#endif  // TESSERA_DNNL

// One convolution layer of the loop: its sizes, whether ReLU follows, and (on oneDNN) its
// primitives per batch size, created on first use (a round has at most two batch sizes:
// the full one and the last, partial batch).
class ConvLayer {
 public:
  static constexpr uint32_t kTag = 0x7e55c0d1;

  ConvLayer(const ConvLayerShape& shape, bool relu, bool useDnnl) : shape_(shape), relu_(relu), useDnnl_(useDnnl) {}

  uint32_t tag() const { return tag_; }
  const ConvLayerShape& shape() const { return shape_; }

  void forward(int batch, const float* x, const float* filter, const float* bias, float* y) {
#ifdef TESSERA_DNNL
    if (useDnnl_) return primitives(batch).forward(x, filter, bias, y);
#endif
    conv2dForward(x, filter, y, shape_.geometry(batch));
    addBiasRelu(y, bias, int64_t{batch} * shape_.outHeight * shape_.outWidth, shape_.outChannels, relu_);
  }

  // dy is the gradient of the layer's output after ReLU has been applied to it (reluBackward).
  void backward(int batch, const float* x, const float* filter, const float* dy, float* dx, float* dw, float* db) {
#ifdef TESSERA_DNNL
    if (useDnnl_) return primitives(batch).backward(x, filter, dy, dx, dw, db);
#endif
    const ConvGeometry g = shape_.geometry(batch);
    if (dx != nullptr) conv2dBackpropInput(dy, filter, dx, g);
    conv2dBackpropFilter(x, dy, dw, g);
    columnSum(dy, db, g.rows(), shape_.outChannels);
  }


 private:
#ifdef TESSERA_DNNL
  DnnlConvolution& primitives(int batch) {
    auto found = byBatch_.find(batch);
    if (found == byBatch_.end()) {
      found = byBatch_.emplace(batch, std::make_unique<DnnlConvolution>(shape_, batch, relu_)).first;
    }
    return *found->second;
  }
  std::map<int, std::unique_ptr<DnnlConvolution>> byBatch_;
#endif
  uint32_t tag_ = kTag;
  ConvLayerShape shape_;
  bool relu_;
  bool useDnnl_;
};

// The first maximum of each window (row-major), its value and its index in x; branch-free
// over the channels like maxPoolGrad in kernels.cc.
TESSERA_CLONES
void maxPoolForward(const float* x, float* y, int32_t* argmax, const PoolGeometry& g) {
  const int c = g.channels;
  float* best = y;
  int32_t* bestAt = argmax;
  for (int n = 0; n < g.batch; n++) {
    const int64_t image = int64_t{n} * g.inHeight * g.inWidth * c;
    for (int oh = 0; oh < g.outHeight; oh++) {
      const int rowStart = std::max(0, oh * g.strideHeight - g.padTop);
      const int rowEnd = std::min(g.inHeight, oh * g.strideHeight - g.padTop + g.filterHeight);
      for (int ow = 0; ow < g.outWidth; ow++, best += c, bestAt += c) {
        const int colStart = std::max(0, ow * g.strideWidth - g.padLeft);
        const int colEnd = std::min(g.inWidth, ow * g.strideWidth - g.padLeft + g.filterWidth);
        std::fill(best, best + c, -std::numeric_limits<float>::infinity());
        std::fill(bestAt, bestAt + c, -1);
        for (int ih = rowStart; ih < rowEnd; ih++) {
          for (int iw = colStart; iw < colEnd; iw++) {
            const int32_t base = static_cast<int32_t>(image + (int64_t{ih} * g.inWidth + iw) * c);
            const float* values = x + base;
            for (int k = 0; k < c; k++) {
              const bool greater = values[k] > best[k];
              best[k] = greater ? values[k] : best[k];
              bestAt[k] = greater ? base + k : bestAt[k];
            }
          }
        }
      }
    }
  }
}

TESSERA_CLONES
void reluBackward(const float* y, float* dy, int64_t size) {
  for (int64_t i = 0; i < size; i++) dy[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

// Keras' clip of softmax outputs in the loss (losses.ts): no log(0), and no gradient
// where the probability of the true class is clipped.
const float kProbabilityEpsilon = 1e-7f;
const float kProbabilityCeiling = 1.0f - 1e-7f;

struct LossResult {
  double lossSum = 0;
  int correct = 0;
};

// Softmax of each row of logits, cross-entropy against the labels, and the gradient of the
// batch's mean loss with respect to the logits, written over dlogits.
LossResult softmaxCrossEntropy(const float* logits, const int32_t* labels, float* dlogits, int batch, int classes) {
  LossResult result;
  const float inverseBatch = 1.0f / static_cast<float>(batch);
  for (int i = 0; i < batch; i++) {
    const float* z = logits + int64_t{i} * classes;
    float* dz = dlogits + int64_t{i} * classes;
    float max = z[0];
    int argmax = 0;
    for (int j = 1; j < classes; j++) {
      if (z[j] > max) {
        max = z[j];
        argmax = j;
      }
    }
    float sum = 0.0f;
    for (int j = 0; j < classes; j++) sum += std::exp(z[j] - max);
    const float logSumExp = max + std::log(sum);
    for (int j = 0; j < classes; j++) dz[j] = std::exp(z[j] - logSumExp);
    const int label = labels[i];
    const float p = dz[label];
    const bool inRange = p >= kProbabilityEpsilon && p <= kProbabilityCeiling;
    result.lossSum -= std::log(static_cast<double>(std::min(std::max(p, kProbabilityEpsilon), kProbabilityCeiling)));
    if (argmax == label) result.correct++;
    for (int j = 0; j < classes; j++) {
      dz[j] = inRange ? (dz[j] - (j == label ? 1.0f : 0.0f)) * inverseBatch : 0.0f;
    }
  }
  return result;
}

// ---------------------------------------------------------------------------------------
// Node-API glue (argument checks in napi-args.h).

bool useDnnlByDefault() {
#ifdef TESSERA_DNNL
  return true;
#else
  return false;
#endif
}

void finalizeConvLayer(napi_env, void* data, void*) { delete static_cast<ConvLayer*>(data); }

bool convLayerArg(napi_env env, napi_value value, ConvLayer** layer) {
  napi_valuetype type;
  void* data = nullptr;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_external ||
      napi_get_value_external(env, value, &data) != napi_ok || data == nullptr ||
      static_cast<ConvLayer*>(data)->tag() != ConvLayer::kTag) {
    return throwError(env, "the first argument must be a layer made by convLayerCreate");
  }
  *layer = static_cast<ConvLayer*>(data);
  return true;
}

bool batchArg(napi_env env, napi_value value, int* batch) {
  if (napi_get_value_int32(env, value, batch) != napi_ok || *batch < 1) {
    return throwError(env, "batch must be a positive integer");
  }
  return true;
}

bool isNullish(napi_env env, napi_value value) {
  napi_valuetype type;
  napi_typeof(env, value, &type);
  return type == napi_null || type == napi_undefined;
}

bool boolArg(napi_env env, napi_value value, bool* out) {
  if (napi_get_value_bool(env, value, out) != napi_ok) return throwError(env, "expected a boolean");
  return true;
}

bool numberArg(napi_env env, napi_value value, double* out) {
  if (napi_get_value_double(env, value, out) != napi_ok || !std::isfinite(*out)) {
    return throwError(env, "expected a finite number");
  }
  return true;
}

// Runs body, turning a C++ exception (oneDNN reports errors that way) into a JavaScript one.
template <typename Body>
napi_value guarded(napi_env env, Body body) {
  try {
    return body();
  } catch (const std::exception& error) {
    napi_throw_error(env, "TESSERA_NATIVE", error.what());
  } catch (...) {
    napi_throw_error(env, "TESSERA_NATIVE", "unknown native error");
  }
  return nullptr;
}

// convLayerCreate(sizes: Int32Array(14) in ConvLayerShape's order, relu: boolean,
// engine: 'auto' | 'im2col') -> an opaque layer.
napi_value ConvLayerCreate(napi_env env, napi_callback_info info) {
  napi_value args[3];
  if (!getArgs(env, info, 3, args)) return nullptr;
  std::vector<int> s;
  bool relu = false;
  if (!intList(env, args[0], &s, 14) || !boolArg(env, args[1], &relu)) return nullptr;
  char engine[16] = {0};
  size_t engineLength = 0;
  if (napi_get_value_string_utf8(env, args[2], engine, sizeof(engine), &engineLength) != napi_ok ||
      (std::strcmp(engine, "auto") != 0 && std::strcmp(engine, "im2col") != 0)) {
    throwError(env, "engine must be 'auto' or 'im2col'");
    return nullptr;
  }
  const ConvLayerShape shape{s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], s[11], s[12], s[13]};
  for (int v : s) {
    if (v < 0) {
      throwError(env, "convolution sizes must not be negative");
      return nullptr;
    }
  }
  if (shape.strideHeight < 1 || shape.strideWidth < 1 || shape.filterHeight < 1 || shape.filterWidth < 1 ||
      shape.inChannels < 1 || shape.outChannels < 1 ||
      (shape.inHeight + shape.padTop + shape.padBottom - shape.filterHeight) / shape.strideHeight + 1 !=
          shape.outHeight ||
      (shape.inWidth + shape.padLeft + shape.padRight - shape.filterWidth) / shape.strideWidth + 1 != shape.outWidth) {
    throwError(env, "convolution sizes are inconsistent (output size, strides, padding)");
    return nullptr;
  }
  const bool useDnnl = useDnnlByDefault() && std::strcmp(engine, "auto") == 0;
  return guarded(env, [&]() -> napi_value {
    auto layer = std::make_unique<ConvLayer>(shape, relu, useDnnl);
    napi_value result;
    if (napi_create_external(env, layer.get(), finalizeConvLayer, nullptr, &result) != napi_ok) {
      throwError(env, "could not create the layer");
      return nullptr;
    }
    layer.release();
    return result;
  });
}

// convLayerForward(layer, batch, x, filter, bias, y): y = relu?(conv(x, filter) + bias).
napi_value ConvLayerForward(napi_env env, napi_callback_info info) {
  napi_value args[6];
  if (!getArgs(env, info, 6, args)) return nullptr;
  ConvLayer* layer = nullptr;
  int batch = 0;
  FloatView x, filter, bias, y;
  if (!convLayerArg(env, args[0], &layer) || !batchArg(env, args[1], &batch) ||
      !floatView(env, args[2], &x, "x must be a Float32Array") ||
      !floatView(env, args[3], &filter, "filter must be a Float32Array") ||
      !floatView(env, args[4], &bias, "bias must be a Float32Array") ||
      !floatView(env, args[5], &y, "y must be a Float32Array")) {
    return nullptr;
  }
  const ConvLayerShape& s = layer->shape();
  if (!checkLength(env, x, s.inputSize(batch), "x has the wrong size") ||
      !checkLength(env, filter, s.filterSize(), "filter has the wrong size") ||
      !checkLength(env, bias, s.outChannels, "bias has the wrong size") ||
      !checkLength(env, y, s.outputSize(batch), "y has the wrong size")) {
    return nullptr;
  }
  return guarded(env, [&]() -> napi_value {
    layer->forward(batch, x.data, filter.data, bias.data, y.data);
    return nullptr;
  });
}

// convLayerBackward(layer, batch, x, filter, dy, dx | null, dw, db): the gradients of the
// input (unless dx is null: a first layer needs none), the filter and the bias.
napi_value ConvLayerBackward(napi_env env, napi_callback_info info) {
  napi_value args[8];
  if (!getArgs(env, info, 8, args)) return nullptr;
  ConvLayer* layer = nullptr;
  int batch = 0;
  FloatView x, filter, dy, dx, dw, db;
  const bool wantDx = !isNullish(env, args[5]);
  if (!convLayerArg(env, args[0], &layer) || !batchArg(env, args[1], &batch) ||
      !floatView(env, args[2], &x, "x must be a Float32Array") ||
      !floatView(env, args[3], &filter, "filter must be a Float32Array") ||
      !floatView(env, args[4], &dy, "dy must be a Float32Array") ||
      (wantDx && !floatView(env, args[5], &dx, "dx must be a Float32Array or null")) ||
      !floatView(env, args[6], &dw, "dw must be a Float32Array") ||
      !floatView(env, args[7], &db, "db must be a Float32Array")) {
    return nullptr;
  }
  const ConvLayerShape& s = layer->shape();
  if (!checkLength(env, x, s.inputSize(batch), "x has the wrong size") ||
      !checkLength(env, filter, s.filterSize(), "filter has the wrong size") ||
      !checkLength(env, dy, s.outputSize(batch), "dy has the wrong size") ||
      (wantDx && !checkLength(env, dx, s.inputSize(batch), "dx has the wrong size")) ||
      !checkLength(env, dw, s.filterSize(), "dw has the wrong size") ||
      !checkLength(env, db, s.outChannels, "db has the wrong size")) {
    return nullptr;
  }
  return guarded(env, [&]() -> napi_value {
    layer->backward(batch, x.data, filter.data, dy.data, wantDx ? dx.data : nullptr, dw.data, db.data);
    return nullptr;
  });
}

bool denseSizes(napi_env env, napi_value value, int* m, int* k, int* n) {
  std::vector<int> s;
  if (!intList(env, value, &s, 3)) return false;
  if (s[0] < 1 || s[1] < 1 || s[2] < 1) return throwError(env, "dense sizes must be positive");
  *m = s[0];
  *k = s[1];
  *n = s[2];
  return true;
}

// denseForward(x, w, b, y, sizes = [m, k, n], relu): y[m, n] = relu?(x[m, k] w[k, n] + b).
napi_value DenseForward(napi_env env, napi_callback_info info) {
  napi_value args[6];
  if (!getArgs(env, info, 6, args)) return nullptr;
  int m = 0, k = 0, n = 0;
  bool relu = false;
  FloatView x, w, b, y;
  if (!floatView(env, args[0], &x, "x must be a Float32Array") ||
      !floatView(env, args[1], &w, "w must be a Float32Array") ||
      !floatView(env, args[2], &b, "b must be a Float32Array") ||
      !floatView(env, args[3], &y, "y must be a Float32Array") || !denseSizes(env, args[4], &m, &k, &n) ||
      !boolArg(env, args[5], &relu)) {
    return nullptr;
  }
  if (!checkLength(env, x, int64_t{m} * k, "x has the wrong size") ||
      !checkLength(env, w, int64_t{k} * n, "w has the wrong size") ||
      !checkLength(env, b, n, "b has the wrong size") || !checkLength(env, y, int64_t{m} * n, "y has the wrong size")) {
    return nullptr;
  }
  denseGemm(false, false, m, n, k, 1.0f, x.data, k, w.data, n, 0.0f, y.data, n);
  addBiasRelu(y.data, b.data, m, n, relu);
  return nullptr;
}

// denseBackward(x, dz, w, dx | null, dw, db, sizes = [m, k, n], alpha, beta):
//   dx = dz w^T (with the w passed in, before dw is written: dw may be w itself),
//   dw = alpha x^T dz + beta dw, db = alpha sum_rows(dz) + beta db.
// alpha = -learningRate, beta = 1 with dw = w and db = b is the SGD step itself.
napi_value DenseBackward(napi_env env, napi_callback_info info) {
  napi_value args[9];
  if (!getArgs(env, info, 9, args)) return nullptr;
  int m = 0, k = 0, n = 0;
  double alpha = 0, beta = 0;
  FloatView x, dz, w, dx, dw, db;
  const bool wantDx = !isNullish(env, args[3]);
  if (!floatView(env, args[0], &x, "x must be a Float32Array") ||
      !floatView(env, args[1], &dz, "dz must be a Float32Array") ||
      !floatView(env, args[2], &w, "w must be a Float32Array") ||
      (wantDx && !floatView(env, args[3], &dx, "dx must be a Float32Array or null")) ||
      !floatView(env, args[4], &dw, "dw must be a Float32Array") ||
      !floatView(env, args[5], &db, "db must be a Float32Array") || !denseSizes(env, args[6], &m, &k, &n) ||
      !numberArg(env, args[7], &alpha) || !numberArg(env, args[8], &beta)) {
    return nullptr;
  }
  if (!checkLength(env, x, int64_t{m} * k, "x has the wrong size") ||
      !checkLength(env, dz, int64_t{m} * n, "dz has the wrong size") ||
      !checkLength(env, w, int64_t{k} * n, "w has the wrong size") ||
      (wantDx && !checkLength(env, dx, int64_t{m} * k, "dx has the wrong size")) ||
      !checkLength(env, dw, int64_t{k} * n, "dw has the wrong size") ||
      !checkLength(env, db, n, "db has the wrong size")) {
    return nullptr;
  }
  const float a = static_cast<float>(alpha), c = static_cast<float>(beta);
  if (wantDx) denseGemm(false, true, m, k, n, 1.0f, dz.data, n, w.data, n, 0.0f, dx.data, k);
  denseGemm(true, false, k, n, m, a, x.data, k, dz.data, n, c, dw.data, n);
  std::vector<float> sums(static_cast<size_t>(n));
  columnSum(dz.data, sums.data(), m, n);
  for (int j = 0; j < n; j++) db.data[j] = c == 0.0f ? a * sums[j] : c * db.data[j] + a * sums[j];
  return nullptr;
}

// reluBackward(y, dy): dy = 0 where the ReLU's output y is 0, in place.
napi_value ReluBackward(napi_env env, napi_callback_info info) {
  napi_value args[2];
  if (!getArgs(env, info, 2, args)) return nullptr;
  FloatView y, dy;
  if (!floatView(env, args[0], &y, "y must be a Float32Array") ||
      !floatView(env, args[1], &dy, "dy must be a Float32Array") ||
      !checkLength(env, dy, static_cast<int64_t>(y.length), "y and dy must have the same size")) {
    return nullptr;
  }
  reluBackward(y.data, dy.data, static_cast<int64_t>(y.length));
  return nullptr;
}

// readPoolGeometry, and indices that fit the Int32Array argmax.
bool poolSizes(napi_env env, napi_value value, PoolGeometry* g) {
  if (!readPoolGeometry(env, value, g)) return false;
  if (g->inputSize() > std::numeric_limits<int32_t>::max()) {
    return throwError(env, "the pool's input is too large for Int32 indices");
  }
  return true;
}

// maxPoolForward(x, y, argmax, sizes as maxPoolGrad's): y = the max of each window,
// argmax = the index in x of its first maximum (for maxPoolBackward).
napi_value MaxPoolForward(napi_env env, napi_callback_info info) {
  napi_value args[4];
  if (!getArgs(env, info, 4, args)) return nullptr;
  PoolGeometry g;
  FloatView x, y;
  int32_t* argmax = nullptr;
  size_t argmaxLength = 0;
  if (!floatView(env, args[0], &x, "x must be a Float32Array") ||
      !floatView(env, args[1], &y, "y must be a Float32Array") ||
      !typedView(env, args[2], napi_int32_array, &argmax, &argmaxLength, "argmax must be an Int32Array") ||
      !poolSizes(env, args[3], &g)) {
    return nullptr;
  }
  if (!checkLength(env, x, g.inputSize(), "x has the wrong size") ||
      !checkLength(env, y, g.outputSize(), "y has the wrong size")) {
    return nullptr;
  }
  if (static_cast<int64_t>(argmaxLength) != g.outputSize()) {
    throwError(env, "argmax has the wrong size");
    return nullptr;
  }
  maxPoolForward(x.data, y.data, argmax, g);
  return nullptr;
}

// maxPoolBackward(dy, argmax, dx): dx = 0, then dx[argmax[i]] += dy[i].
napi_value MaxPoolBackward(napi_env env, napi_callback_info info) {
  napi_value args[3];
  if (!getArgs(env, info, 3, args)) return nullptr;
  FloatView dy, dx;
  int32_t* argmax = nullptr;
  size_t argmaxLength = 0;
  if (!floatView(env, args[0], &dy, "dy must be a Float32Array") ||
      !typedView(env, args[1], napi_int32_array, &argmax, &argmaxLength, "argmax must be an Int32Array") ||
      !floatView(env, args[2], &dx, "dx must be a Float32Array")) {
    return nullptr;
  }
  if (argmaxLength != dy.length) {
    throwError(env, "argmax and dy must have the same size");
    return nullptr;
  }
  std::memset(dx.data, 0, sizeof(float) * dx.length);
  const int64_t limit = static_cast<int64_t>(dx.length);
  for (size_t i = 0; i < dy.length; i++) {
    const int32_t at = argmax[i];
    if (at >= 0 && at < limit) dx.data[at] += dy.data[i];
  }
  return nullptr;
}

// softmaxCrossEntropy(logits, labels: Int32Array, dlogits, sizes = [batch, classes],
// out: Float64Array(2)): out = [mean loss, correct predictions]; dlogits = the gradient of
// the mean loss with respect to the logits.
napi_value SoftmaxCrossEntropy(napi_env env, napi_callback_info info) {
  napi_value args[5];
  if (!getArgs(env, info, 5, args)) return nullptr;
  std::vector<int> s;
  FloatView logits, dlogits;
  int32_t* labels = nullptr;
  size_t labelsLength = 0;
  double* out = nullptr;
  size_t outLength = 0;
  if (!floatView(env, args[0], &logits, "logits must be a Float32Array") ||
      !typedView(env, args[1], napi_int32_array, &labels, &labelsLength, "labels must be an Int32Array") ||
      !floatView(env, args[2], &dlogits, "dlogits must be a Float32Array") || !intList(env, args[3], &s, 2) ||
      !typedView(env, args[4], napi_float64_array, &out, &outLength, "out must be a Float64Array")) {
    return nullptr;
  }
  const int batch = s[0], classes = s[1];
  if (batch < 1 || classes < 1 || outLength != 2 || labelsLength < static_cast<size_t>(batch)) {
    throwError(env, "softmaxCrossEntropy: batch and classes must be positive, labels hold a batch, out 2 numbers");
    return nullptr;
  }
  if (!checkLength(env, logits, int64_t{batch} * classes, "logits has the wrong size") ||
      !checkLength(env, dlogits, int64_t{batch} * classes, "dlogits has the wrong size")) {
    return nullptr;
  }
  for (int i = 0; i < batch; i++) {
    if (labels[i] < 0 || labels[i] >= classes) {
      throwError(env, "a label is outside 0..classes-1");
      return nullptr;
    }
  }
  const LossResult result = softmaxCrossEntropy(logits.data, labels, dlogits.data, batch, classes);
  out[0] = result.lossSum / batch;
  out[1] = result.correct;
  return nullptr;
}

// sgdUpdate(w, g, learningRate): w = w + (-learningRate) g, as tfjs's SGD optimizer computes it.
napi_value SgdUpdate(napi_env env, napi_callback_info info) {
  napi_value args[3];
  if (!getArgs(env, info, 3, args)) return nullptr;
  FloatView w, g;
  double learningRate = 0;
  if (!floatView(env, args[0], &w, "w must be a Float32Array") ||
      !floatView(env, args[1], &g, "g must be a Float32Array") || !numberArg(env, args[2], &learningRate) ||
      !checkLength(env, g, static_cast<int64_t>(w.length), "w and g must have the same size")) {
    return nullptr;
  }
  const SingleThreadedBlas oneThread;
  cblas_saxpy(static_cast<int>(w.length), -static_cast<float>(learningRate), g.data, 1, w.data, 1);
  return nullptr;
}

// convEngine(): the library convolutions run on by default.
napi_value ConvEngine(napi_env env, napi_callback_info) {
  napi_value result;
#ifdef TESSERA_DNNL
  const dnnl_version_t* version = dnnl_version();
  const std::string name = "oneDNN " + std::to_string(version->major) + "." + std::to_string(version->minor) + "." +
                           std::to_string(version->patch);
#else
  const std::string name = "im2col + OpenBLAS";
#endif
  napi_create_string_utf8(env, name.c_str(), NAPI_AUTO_LENGTH, &result);
  return result;
}

// denseEngine(): what runs the dense products (dense-gemm.h), with the kernels it chose.
napi_value DenseEngine(napi_env env, napi_callback_info) {
  napi_value result;
  const std::string name = denseGemmEngine(openblas_get_corename());
  napi_create_string_utf8(env, name.c_str(), NAPI_AUTO_LENGTH, &result);
  return result;
}

// setDenseEngine('auto' | 'openblas'): the library of the dense products from now on (dense-gemm.h).
napi_value SetDenseEngine(napi_env env, napi_callback_info info) {
  napi_value args[1];
  if (!getArgs(env, info, 1, args)) return nullptr;
  char name[16] = {0};
  const bool read = napi_get_value_string_utf8(env, args[0], name, sizeof(name), nullptr) == napi_ok;
  const bool isAuto = read && std::strcmp(name, "auto") == 0;
  if (!isAuto && !(read && std::strcmp(name, "openblas") == 0)) {
    napi_throw_type_error(env, nullptr, "the dense engine must be 'auto' or 'openblas'");
    return nullptr;
  }
  denseLibrary = isAuto ? DenseLibrary::Auto : DenseLibrary::OpenBlas;
  return nullptr;
}

}  // namespace

void setConvolutionThreads(int threads) {
#ifdef TESSERA_DNNL
  omp_set_num_threads(threads);
#else
  (void)threads;
#endif
}

void defineTrainingFunctions(napi_env env, napi_value exports) {
  const napi_property_descriptor properties[] = {
      {"convLayerCreate", nullptr, ConvLayerCreate, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"convLayerForward", nullptr, ConvLayerForward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"convLayerBackward", nullptr, ConvLayerBackward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"denseForward", nullptr, DenseForward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"denseBackward", nullptr, DenseBackward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"reluBackward", nullptr, ReluBackward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"maxPoolForward", nullptr, MaxPoolForward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"maxPoolBackward", nullptr, MaxPoolBackward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"softmaxCrossEntropy", nullptr, SoftmaxCrossEntropy, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"sgdUpdate", nullptr, SgdUpdate, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"convEngine", nullptr, ConvEngine, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"denseEngine", nullptr, DenseEngine, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"setDenseEngine", nullptr, SetDenseEngine, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(properties) / sizeof(properties[0]), properties);
}

}  // namespace tessera
