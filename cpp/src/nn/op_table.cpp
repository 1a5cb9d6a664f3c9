// The table of supported ops: every op family adds its import handlers (see op_import.hpp).
#include "nn/op_import.hpp"

namespace hepinfer::nn {

const OpTable& op_table() {
  static const OpTable table = [] {
    OpTable t;
    add_conv_ops(t);
    add_elementwise_ops(t);
    add_shape_ops(t);
    add_linear_ops(t);
    add_reduce_ops(t);
    add_rnn_ops(t);
    add_pool_ops(t);
    add_resize_ops(t);
    add_index_ops(t);
    add_misc_ops(t);
    return t;
  }();
  return table;
}

}  // namespace hepinfer::nn
