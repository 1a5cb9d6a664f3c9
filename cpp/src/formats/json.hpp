#pragma once
// A small JSON and UBJSON (Universal Binary JSON, as XGBoost writes it) reader.
// Internal to hepinfer::core. Never crashes on malformed input: throws
// ModelFormatError naming the source and the byte offset.
//
// The document is validated in one pass that allocates nothing per value, and is
// then read in place: a JsonValue is a handle (document, offset) into the input
// bytes, and numbers, strings, members and items are decoded when asked for. The
// memory a document costs is therefore the input itself plus what the caller reads
// out of it, whatever the document holds (a file of tiny values - JSON numbers,
// UBJSON null markers - used to take ~100 bytes of nodes per value).
// The input must outlive the JsonDocument and its values.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hepinfer::detail {

class JsonDocument;

class JsonValue {
 public:
  enum class Type : std::uint8_t { Null, Bool, Number, String, Array, Object, NumberArray };

  Type type = Type::Null;

  JsonValue() = default;
  bool is_object() const { return type == Type::Object; }
  bool is_array() const { return type == Type::Array || type == Type::NumberArray; }
  /// Number of items of an array (0 for other values); walks the array.
  std::size_t size() const;
  /// The first member named `key` (file order); nullopt when absent or not an object.
  std::optional<JsonValue> find(std::string_view key) const;
  /// Calls f(key, value) for each member of an object, in file order, until f returns false.
  void for_each_member(const std::function<bool(std::string_view, const JsonValue&)>& f) const;
  /// Calls f(item) for each item of an array (not of a NumberArray), in order, until f returns false.
  void for_each_item(const std::function<bool(const JsonValue&)>& f) const;

 private:
  friend class JsonDocument;
  friend class JsonReader;
  JsonValue(const JsonDocument* doc, std::size_t pos, char marker);

  const JsonDocument* doc_ = nullptr;
  std::size_t pos_ = 0;  ///< JSON: the value's first byte; UBJSON: its payload, after the marker
  char marker_ = 0;      ///< JSON: the value's first byte; UBJSON: its type marker
};

/// A validated JSON or UBJSON document over bytes that the caller keeps alive.
class JsonDocument {
 public:
  JsonDocument(const JsonDocument&) = delete;
  JsonDocument& operator=(const JsonDocument&) = delete;

  JsonValue root() const { return JsonValue(this, root_pos_, root_marker_); }
  bool ubjson() const { return ubj_; }
  std::string_view bytes() const { return s_; }
  const std::string& source() const { return src_; }

 private:
  friend JsonDocument parse_json(const std::string& text, const std::string& source_name);
  friend JsonDocument parse_ubjson(const std::string& bytes, const std::string& source_name);
  JsonDocument(std::string_view bytes, std::string source, bool ubj);

  std::string_view s_;
  std::string src_;
  bool ubj_;
  std::size_t root_pos_ = 0;
  char root_marker_ = 0;
};

/// Parse (validate) UTF-8 JSON text; `text` must outlive the document.
JsonDocument parse_json(const std::string& text, const std::string& source_name);
/// Parse (validate) UBJSON bytes (draft 12, big-endian, with optimized typed containers).
JsonDocument parse_ubjson(const std::string& bytes, const std::string& source_name);

/// Accessors that throw ModelFormatError("<source>: <path>: ...") when the value is not as expected.
class JsonReader {
 public:
  explicit JsonReader(std::string source_name) : source_(std::move(source_name)) {}
  [[noreturn]] void fail(const std::string& path, const std::string& what) const;
  JsonValue member(const JsonValue& obj, const std::string& key, const std::string& path) const;
  /// A number or a string holding a number (XGBoost writes many parameters as strings).
  double number(const JsonValue& v, const std::string& path) const;
  std::int64_t integer(const JsonValue& v, const std::string& path) const;
  std::string string(const JsonValue& v, const std::string& path) const;
  std::vector<double> numbers(const JsonValue& v, const std::string& path) const;
  std::vector<std::int64_t> integers(const JsonValue& v, const std::string& path) const;
  const std::string& source() const { return source_; }

 private:
  /// number() for item `index` of the array at `path` (the path is only built on failure).
  double item_number(const JsonValue& v, const std::string& path, std::size_t index) const;
  std::string source_;
};

/// Parse a double exactly as strtod does, accepting "inf", "-inf", "nan"; returns false if not a number.
bool parse_double(const char* begin, const char* end, double& out);

}  // namespace hepinfer::detail
