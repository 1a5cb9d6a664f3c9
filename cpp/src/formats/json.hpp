#pragma once
// A small JSON and UBJSON (Universal Binary JSON, as XGBoost writes it) DOM.
// Internal to hepinfer::core. Never crashes on malformed input: throws
// ModelFormatError naming the source and the byte offset.

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace hepinfer::detail {

class JsonValue {
 public:
  enum class Type : std::uint8_t { Null, Bool, Number, String, Array, Object, NumberArray };

  Type type = Type::Null;
  bool boolean = false;
  double number = 0.0;
  std::string string;                       // String
  std::vector<JsonValue> items;             // Array
  std::vector<double> numbers;              // NumberArray (UBJ typed arrays)
  std::vector<std::pair<std::string, JsonValue>> members;  // Object (in file order)

  bool is_object() const { return type == Type::Object; }
  bool is_array() const { return type == Type::Array || type == Type::NumberArray; }
  std::size_t size() const { return type == Type::NumberArray ? numbers.size() : items.size(); }
  /// Member lookup; nullptr when absent or not an object.
  const JsonValue* find(const std::string& key) const;
};

/// Parse UTF-8 JSON text.
JsonValue parse_json(const std::string& text, const std::string& source_name);
/// Parse UBJSON bytes (draft 12, big-endian, with optimized typed containers).
JsonValue parse_ubjson(const std::string& bytes, const std::string& source_name);

/// Accessors that throw ModelFormatError("<source>: <path>: ...") when the value is not as expected.
class JsonReader {
 public:
  explicit JsonReader(std::string source_name) : source_(std::move(source_name)) {}
  [[noreturn]] void fail(const std::string& path, const std::string& what) const;
  const JsonValue& member(const JsonValue& obj, const std::string& key, const std::string& path) const;
  /// A number or a string holding a number (XGBoost writes many parameters as strings).
  double number(const JsonValue& v, const std::string& path) const;
  std::int64_t integer(const JsonValue& v, const std::string& path) const;
  std::string string(const JsonValue& v, const std::string& path) const;
  std::vector<double> numbers(const JsonValue& v, const std::string& path) const;
  std::vector<std::int64_t> integers(const JsonValue& v, const std::string& path) const;
  const std::string& source() const { return source_; }

 private:
  std::string source_;
};

/// Parse a double exactly as strtod does, accepting "inf", "-inf", "nan"; returns false if not a number.
bool parse_double(const char* begin, const char* end, double& out);

}  // namespace hepinfer::detail
