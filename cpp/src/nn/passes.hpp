#pragma once
// The passes that turn a freshly imported graph IR into the graph the executor runs. They run
// once, at load, in the order of run_passes; each reads and rewrites Graph in place.
#include "nn/graph.hpp"

namespace hepinfer::nn {

/// Runs every pass below in order (fuse only with `optimize`).
void run_passes(Graph& g, bool optimize);

/// Evaluates nodes whose inputs are all constants and turns their outputs into constants
/// (within load_budget_bytes(); larger ones stay nodes). Reads the constant inputs that some
/// ops need at load first (BatchNormalization statistics, Clip bounds). Throws
/// ModelFormatError naming the node when a node fails on its constant inputs.
void fold_constants(Graph& g);
/// Gemm/MatMul with constant weights -> Dense, then a constant bias Add and an elementwise
/// activation that follow a Dense (or Conv) with a single use are fused into it.
void fuse(Graph& g);
/// Removes nodes whose outputs no graph output depends on.
void remove_dead(Graph& g);
/// Gives every computed value a workspace slot; values whose lifetimes (extended over
/// aliases) do not overlap share one. Fills n_slots and slots_free_after.
void plan_buffers(Graph& g);
/// Sets g.separable: every input and output shares the same named symbolic first dimension.
void mark_batch_separable(Graph& g);

}  // namespace hepinfer::nn
