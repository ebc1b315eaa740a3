// What the operator libraries of this folder share (each .cc is one library, registered with
// mx.library.load): lib_api.h, the attributes' type, and OPERATOR(name, inputs), which
// registers the operator `name` of `inputs` inputs and one output, of the inputs' type
// (float32 or float64, all alike), from the functions forward, backward and infer_shape of
// its file, and defines the library's initialize (this lib_api.h: MXNet >= 1.7).
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "mxnet/lib_api.h"

using namespace mxnet::ext;
using Attrs = std::unordered_map<std::string, std::string>;

namespace library {

template <int Inputs>
MXReturnValue parse_attrs(const Attrs&, int* num_in, int* num_out) {
  *num_in = Inputs;
  *num_out = 1;
  return MX_SUCCESS;
}

inline MXReturnValue float_type(const Attrs&, std::vector<int>* in, std::vector<int>* out) {
  for (int type : *in) {
    if ((type != kFloat32 && type != kFloat64) || type != in->at(0)) {
      MX_ERROR_MSG << "the operator takes float32 or float64 inputs, all of one type";
      return MX_FAIL;
    }
  }
  out->at(0) = in->at(0);
  return MX_SUCCESS;
}

}  // namespace library

#define OPERATOR(name, inputs)                                                         \
  REGISTER_OP(name)                                                                    \
      .setParseAttrs(library::parse_attrs<inputs>)                                     \
      .setInferType(library::float_type)                                               \
      .setInferShape(infer_shape)                                                      \
      .setForward(forward, "cpu")                                                      \
      .setBackward(backward, "cpu");                                                   \
  MXReturnValue initialize(int version) { return version >= 10700 ? MX_SUCCESS : MX_FAIL; }
