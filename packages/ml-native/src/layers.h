// The native training loop's kernels beyond convolutions, pools and dense layers (layers.cc).
#pragma once

#include <node_api.h>

namespace tessera {

// Adds sgdStep, sigmoidCrossEntropy, meanSquaredError, dropoutForward, dropoutBackward,
// globalAveragePoolForward/Backward, averagePoolForward/Backward, layerNormForward/Backward,
// batchNormForward/Backward, embeddingForward/Backward, addInto, tokenPositionEmbedding-
// Forward/Backward and attentionForward/Backward to the addon's exports.
void defineLayerFunctions(napi_env env, napi_value exports);

}  // namespace tessera
