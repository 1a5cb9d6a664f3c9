// Fused recurrent cell updates (kernels.cpp), called by ops_rnn.cpp once the step's gate sums
// are computed: one pass over a batch row instead of one per activation and update.
#pragma once

#include <cstddef>

namespace hepinfer::nn {

/// One LSTM step of one batch row with the default activations (sigmoid for i, o, f; tanh for
/// c and h) and no peepholes, clip or input_forget: g [4H] holds the gate sums in ONNX order
/// i, o, f, c (biases included), x [4H] the input projection to add to them (null: already in
/// g). Updates c [H] in place, writes h [H] and, when not null, y [H]. The values are those of
/// activate() on each gate followed by c = f c + i c~, h = o tanh(c), in that order.
void lstm_cell_default(std::size_t H, const float* g, const float* x, float* c, float* h, float* y);

}  // namespace hepinfer::nn
