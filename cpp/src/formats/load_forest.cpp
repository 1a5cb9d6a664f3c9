// Forest::load and Forest::load_from_memory: which reader a model file needs (by its content or
// LoadOptions::format), read by that reader into the ForestIR the engine compiles. The engine
// (forest/) never looks at a file format; the readers (formats/) never evaluate a tree.
#include <string>

#include "common/file.hpp"
#include "hepinfer/errors.hpp"
#include "hepinfer/forest.hpp"
#include "hepinfer/load.hpp"

namespace hepinfer {

std::string detect_format(const std::string& content, const std::string& source_name) {
  std::size_t i = 0;
  // UTF-8 byte order mark
  if (content.size() >= 3 && static_cast<unsigned char>(content[0]) == 0xEF &&
      static_cast<unsigned char>(content[1]) == 0xBB && static_cast<unsigned char>(content[2]) == 0xBF)
    i = 3;
  if (!content.empty() && content[0] == '{') {
    std::size_t j = 1;
    while (j < content.size() && (content[j] == ' ' || content[j] == '\n' || content[j] == '\r' || content[j] == '\t'))
      ++j;
    if (j < content.size() && (content[j] == '"' || content[j] == '}')) return "xgboost-json";
    return "xgboost-ubj";
  }
  while (i < content.size() && (content[i] == ' ' || content[i] == '\n' || content[i] == '\r' || content[i] == '\t'))
    ++i;
  if (i < content.size() && content[i] == '{') return "xgboost-json";
  if (i < content.size() && content[i] == '<') return "tmva";
  if (content.compare(i, 4, "tree") == 0 || content.find("\nTree=") != std::string::npos) return "lightgbm";
  if (content.empty()) throw ModelFormatError(source_name + ": the model file is empty");
  throw ModelFormatError(source_name +
                         ": unrecognised model format (expected XGBoost JSON/UBJ, a LightGBM text model or a "
                         "TMVA BDT XML weight file)");
}

Forest Forest::load_from_memory(const std::string& content, const LoadOptions& options,
                                const std::string& source_name) {
  std::string format = options.format;
  if (format == "auto") format = detect_format(content, source_name);
  if (format == "xgboost-json" || format == "json") return from_ir(load_xgboost_json(content, source_name));
  if (format == "xgboost-ubj" || format == "ubj") return from_ir(load_xgboost_ubj(content, source_name));
  if (format == "lightgbm") return from_ir(load_lightgbm_text(content, source_name));
  if (format == "tmva") return from_ir(load_tmva_xml(content, source_name, options.tmva_cut_op));
  throw ModelFormatError(source_name + ": unknown model format '" + options.format +
                         "' (expected auto, xgboost-json, xgboost-ubj, lightgbm or tmva)");
}

Forest Forest::load(const std::string& path, const LoadOptions& options) {
  return load_from_memory(read_file(path, path + ": cannot open the model file"), options, path);
}

}  // namespace hepinfer
