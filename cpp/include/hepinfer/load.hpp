#pragma once
/// \file load.hpp
/// The model file readers: each turns one library's file into the IR an engine compiles, with that
/// library's exact semantics (forest_ir.hpp). Forest::load picks the reader by the content (or
/// LoadOptions::format) and calls it; use these directly to inspect or transform a model's IR
/// (Forest::from_ir compiles it). `source_name` is used in error messages.

#include <cstdint>
#include <string>

#include "hepinfer/forest_ir.hpp"

namespace hepinfer {

enum class TMVACutOp : std::uint8_t;

ForestIR load_xgboost_json(const std::string& text, const std::string& source_name);
ForestIR load_xgboost_ubj(const std::string& bytes, const std::string& source_name);
ForestIR load_lightgbm_text(const std::string& text, const std::string& source_name);
ForestIR load_tmva_xml(const std::string& text, const std::string& source_name, TMVACutOp cut_op);

/// Which reader a model file's content needs: "xgboost-json", "xgboost-ubj", "lightgbm" or
/// "tmva" (ModelFormatError naming `source_name` for an empty or unrecognised file).
std::string detect_format(const std::string& content, const std::string& source_name);

}  // namespace hepinfer
