// The names of the core's enum options, parsed and printed in one place for every front end
// (the bindings, the C API, rdf.hpp users): see forest.hpp.
#include <string>

#include "hepinfer/errors.hpp"
#include "hepinfer/forest.hpp"

namespace hepinfer {

namespace {

template <class Enum, std::size_t N>
Enum parse(const std::string& name, const char* what, const std::pair<const char*, Enum> (&table)[N]) {
  std::string accepted;
  for (const auto& [spelling, value] : table) {
    if (name == spelling) return value;
    accepted += (accepted.empty() ? "\"" : ", \"") + std::string(spelling) + "\"";
  }
  throw InputError(std::string(what) + " must be one of " + accepted + ", not \"" + name + "\"");
}

constexpr std::pair<const char*, Output> kOutputs[] = {{"probability", Output::Probability},
                                                       {"margin", Output::Margin}};
constexpr std::pair<const char*, TMVACutOp> kCutOps[] = {
    {">=", TMVACutOp::GreaterEqual}, {">", TMVACutOp::Greater}, {"auto", TMVACutOp::FromFile}};

template <class Enum, std::size_t N>
const char* name_of(Enum value, const std::pair<const char*, Enum> (&table)[N]) {
  for (const auto& [spelling, v] : table)
    if (v == value) return spelling;
  return "?";
}

}  // namespace

Output parse_output(const std::string& name, const char* what) { return parse(name, what, kOutputs); }
TMVACutOp parse_tmva_cut_op(const std::string& name, const char* what) { return parse(name, what, kCutOps); }
const char* output_name(Output output) { return name_of(output, kOutputs); }
const char* tmva_cut_op_name(TMVACutOp op) { return name_of(op, kCutOps); }

}  // namespace hepinfer
