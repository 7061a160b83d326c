// Node-API argument helpers shared by the addon's source files: arguments are
// Float32Arrays and Int32Arrays of sizes, checked here so that a wrong call from
// JavaScript is an exception, never a read or write out of bounds.
#pragma once

#include <node_api.h>

#include <cstdint>
#include <vector>

#include "shapes.h"

namespace tessera {

struct FloatView {
  float* data = nullptr;
  size_t length = 0;
};

inline bool throwError(napi_env env, const char* message) {
  napi_throw_error(env, "TESSERA_NATIVE", message);
  return false;
}

// A typed array of the given element type, any length (Int32Array indices, Uint8Array labels).
template <typename T>
inline bool typedView(napi_env env, napi_value value, napi_typedarray_type expected, T** data, size_t* length,
                      const char* message) {
  bool isTypedArray = false;
  napi_is_typedarray(env, value, &isTypedArray);
  napi_typedarray_type type;
  void* raw = nullptr;
  if (!isTypedArray || napi_get_typedarray_info(env, value, &type, length, &raw, nullptr, nullptr) != napi_ok ||
      type != expected) {
    napi_throw_type_error(env, "TESSERA_NATIVE", message);
    return false;
  }
  *data = static_cast<T*>(raw);
  return true;
}

inline bool floatView(napi_env env, napi_value value, FloatView* view, const char* name) {
  return typedView(env, value, napi_float32_array, &view->data, &view->length, name);
}

inline bool intList(napi_env env, napi_value value, std::vector<int>* out, size_t expected) {
  int32_t* values = nullptr;
  size_t length = 0;
  const char* message = "sizes must be an Int32Array of the documented length";
  if (!typedView(env, value, napi_int32_array, &values, &length, message)) return false;
  if (length != expected) return throwError(env, message);
  out->assign(values, values + length);
  return true;
}

inline bool checkLength(napi_env env, const FloatView& view, int64_t expected, const char* message) {
  if (static_cast<int64_t>(view.length) != expected) return throwError(env, message);
  return true;
}

inline bool getArgs(napi_env env, napi_callback_info info, size_t expected, napi_value* args) {
  size_t count = expected;
  if (napi_get_cb_info(env, info, &count, args, nullptr, nullptr) != napi_ok || count != expected) {
    return throwError(env, "wrong number of arguments");
  }
  return true;
}

// Pool sizes in PoolGeometry's order (12 Int32s, none negative), as maxPoolGrad and
// maxPoolForward take them.
inline bool readPoolGeometry(napi_env env, napi_value value, PoolGeometry* g) {
  std::vector<int> s;
  if (!intList(env, value, &s, 12)) return false;
  for (int v : s) {
    if (v < 0) return throwError(env, "pool sizes must not be negative");
  }
  *g = PoolGeometry{s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], s[11]};
  return true;
}

}  // namespace tessera
