// The layer kernels of @tessera/ml's native training loop (training.cc).
#pragma once

#include <node_api.h>

namespace tessera {

// Adds convLayerCreate, convLayerForward, convLayerBackward, denseForward, denseBackward,
// reluBackward, maxPoolForward, maxPoolBackward, softmaxCrossEntropy, sgdUpdate and
// convEngine to the addon's exports.
void defineTrainingFunctions(napi_env env, napi_value exports);

// Threads for the convolution library (oneDNN's OpenMP pool), next to OpenBLAS's own.
void setConvolutionThreads(int threads);

}  // namespace tessera
