#pragma once
// The executor's pieces that the public Model methods (model.cpp) and the load (the ONNX
// reader) call: input checks and binding, row-block evaluation, output storage, the load-time
// dry run. Graph::run and the workspace pool are declared in graph.hpp.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "hepinfer/nn.hpp"
#include "nn/graph.hpp"

namespace hepinfer::nn {

/// Checks an input against its declaration (type, rank, fixed dims); symbolic dims must agree
/// between inputs (`dims` collects them). Throws InputError naming the input.
void check_input(const TensorInfo& t, const InputTensor& x, std::map<std::string, std::int64_t>& dims);
/// Points the graph inputs of `ws` at the caller's data; with rows >= 0, at rows
/// [row0, row0 + rows) of it.
void bind(const Graph& g, Workspace& ws, const std::vector<const InputTensor*>& xs, std::int64_t row0,
          std::int64_t rows);
/// Copies a value into an output tensor.
void store_output(const Value& v, OutputTensor& o);

// ---- evaluation of a batch-separable graph in row blocks
constexpr std::int64_t kFirstBlock = 32;       // rows of the first block, which measures them
constexpr std::int64_t kMinBlockedRows = 256;  // smaller batches run in one piece
/// Rows per block after a block of `rows` rows ran in ws.
std::int64_t block_rows(const Graph& g, const Workspace& ws, std::int64_t rows);
/// Runs rows [r0, r1) of a separable graph in blocks, appending each output's rows to `part`.
/// Returns false (part unusable) when an output is not one row per input row.
bool run_rows(const Graph& g, const std::vector<const InputTensor*>& xs, std::int64_t r0, std::int64_t r1,
              std::vector<OutputTensor>& part);

/// Runs a freshly loaded graph once on zero inputs of its declared shapes (a symbolic batch
/// dimension set to 1) within load_budget_bytes(), so that shapes that do not fit are reported
/// at load. Throws ModelFormatError naming `source_name` and the node.
void dry_run(const Graph& g, const std::string& source_name);

}  // namespace hepinfer::nn
