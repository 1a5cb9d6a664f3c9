#include "formats/json.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "hepinfer/errors.hpp"

namespace hepinfer::detail {

namespace {
constexpr int kMaxDepth = 512;
}

const JsonValue* JsonValue::find(const std::string& key) const {
  if (type != Type::Object) return nullptr;
  for (const auto& kv : members)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

bool parse_double(const char* begin, const char* end, double& out) {
  // skip leading spaces
  while (begin < end && (*begin == ' ' || *begin == '\t' || *begin == '\n' || *begin == '\r')) ++begin;
  while (end > begin && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r')) --end;
  if (begin == end) return false;
  std::size_t n = static_cast<std::size_t>(end - begin);
  if (n > 512) return false;
  char buf[520];
  std::memcpy(buf, begin, n);
  buf[n] = '\0';
  char* stop = nullptr;
  double v = std::strtod(buf, &stop);
  if (stop != buf + n) return false;
  out = v;
  return true;
}

// ---------------------------------------------------------------- JSON text
namespace {

class TextParser {
 public:
  TextParser(const std::string& text, const std::string& source) : s_(text), src_(source) {}

  JsonValue parse_document() {
    skip_ws();
    JsonValue v = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw ModelFormatError(src_ + ": invalid JSON at byte " + std::to_string(pos_) + ": " + what);
  }
  void skip_ws() {
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (c == ' ' || c == '\n' || c == '\r' || c == '\t') ++pos_;
      else break;
    }
  }
  char peek() const {
    if (pos_ >= s_.size()) {
      throw ModelFormatError(src_ + ": invalid JSON: unexpected end of input at byte " + std::to_string(pos_) +
                             " (truncated file?)");
    }
    return s_[pos_];
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }

  JsonValue parse_value(int depth) {
    if (depth > kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth));
    char c = peek();
    JsonValue v;
    if (c == '{') {
      ++pos_;
      v.type = JsonValue::Type::Object;
      skip_ws();
      if (peek() == '}') { ++pos_; return v; }
      while (true) {
        skip_ws();
        if (peek() != '"') fail("expected a member name");
        std::string key = parse_string();
        skip_ws();
        expect(':');
        skip_ws();
        v.members.emplace_back(std::move(key), parse_value(depth + 1));
        skip_ws();
        char d = peek();
        ++pos_;
        if (d == '}') break;
        if (d != ',') { --pos_; fail("expected ',' or '}'"); }
      }
    } else if (c == '[') {
      ++pos_;
      v.type = JsonValue::Type::Array;
      skip_ws();
      if (peek() == ']') { ++pos_; return v; }
      while (true) {
        skip_ws();
        v.items.push_back(parse_value(depth + 1));
        skip_ws();
        char d = peek();
        ++pos_;
        if (d == ']') break;
        if (d != ',') { --pos_; fail("expected ',' or ']'"); }
      }
    } else if (c == '"') {
      v.type = JsonValue::Type::String;
      v.string = parse_string();
    } else if (c == 't' || c == 'f' || c == 'n') {
      if (s_.compare(pos_, 4, "true") == 0) { v.type = JsonValue::Type::Bool; v.boolean = true; pos_ += 4; }
      else if (s_.compare(pos_, 5, "false") == 0) { v.type = JsonValue::Type::Bool; pos_ += 5; }
      else if (s_.compare(pos_, 4, "null") == 0) { pos_ += 4; }
      else if (s_.compare(pos_, 3, "nan") == 0) { v.type = JsonValue::Type::Number; v.number = std::numeric_limits<double>::quiet_NaN(); pos_ += 3; }
      else fail("unexpected literal");
    } else {
      std::size_t start = pos_;
      while (pos_ < s_.size()) {
        char d = s_[pos_];
        if ((d >= '0' && d <= '9') || d == '-' || d == '+' || d == '.' || d == 'e' || d == 'E' ||
            d == 'i' || d == 'n' || d == 'f' || d == 'I' || d == 'N' || d == 'F' || d == 'a' || d == 'A' ||
            d == 't' || d == 'y')
          ++pos_;
        else
          break;
      }
      if (start == pos_) fail(std::string("unexpected character '") + c + "'");
      v.type = JsonValue::Type::Number;
      if (!parse_double(s_.data() + start, s_.data() + pos_, v.number)) {
        pos_ = start;
        fail("malformed number");
      }
    }
    return v;
  }

  static void put_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) out += static_cast<char>(cp);
    else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  unsigned parse_hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned cp = 0;
    for (int i = 0; i < 4; ++i) {
      char h = s_[pos_++];
      cp <<= 4;
      if (h >= '0' && h <= '9') cp |= static_cast<unsigned>(h - '0');
      else if (h >= 'a' && h <= 'f') cp |= static_cast<unsigned>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') cp |= static_cast<unsigned>(h - 'A' + 10);
      else fail("bad \\u escape");
    }
    return cp;
  }

  std::string parse_string() {
    expect('"');
    std::string out;
    while (true) {
      char c = peek();
      ++pos_;
      if (c == '"') break;
      if (c != '\\') { out += c; continue; }
      char e = peek();
      ++pos_;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = parse_hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && pos_ + 6 <= s_.size() && s_[pos_] == '\\' && s_[pos_ + 1] == 'u') {
            pos_ += 2;
            unsigned lo = parse_hex4();
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          put_utf8(out, cp);
          break;
        }
        default: fail("bad escape");
      }
    }
    return out;
  }

  const std::string& s_;
  const std::string& src_;
  std::size_t pos_ = 0;
};

// ---------------------------------------------------------------- UBJSON
class UbjParser {
 public:
  UbjParser(const std::string& bytes, const std::string& source) : s_(bytes), src_(source) {}

  JsonValue parse_document() {
    JsonValue v = parse_value(next_marker(), 0);
    while (pos_ < s_.size() && s_[pos_] == 'N') ++pos_;  // no-op markers
    if (pos_ != s_.size()) fail("unexpected trailing bytes");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw ModelFormatError(src_ + ": invalid UBJSON at byte " + std::to_string(pos_) + ": " + what);
  }
  void need(std::size_t n) const {
    if (n > s_.size() - pos_)
      throw ModelFormatError(src_ + ": invalid UBJSON: unexpected end of input at byte " + std::to_string(pos_) +
                             " (truncated file?)");
  }
  char next_marker() {
    while (true) {
      need(1);
      char c = s_[pos_++];
      if (c != 'N') return c;
    }
  }
  template <typename U>
  U read_be() {
    need(sizeof(U));
    U v = 0;
    for (std::size_t i = 0; i < sizeof(U); ++i) v = static_cast<U>((v << 8) | static_cast<unsigned char>(s_[pos_ + i]));
    pos_ += sizeof(U);
    return v;
  }
  double read_number(char t) {
    switch (t) {
      case 'i': return static_cast<double>(static_cast<std::int8_t>(read_be<std::uint8_t>()));
      case 'U': return static_cast<double>(read_be<std::uint8_t>());
      case 'I': return static_cast<double>(static_cast<std::int16_t>(read_be<std::uint16_t>()));
      case 'l': return static_cast<double>(static_cast<std::int32_t>(read_be<std::uint32_t>()));
      case 'L': return static_cast<double>(static_cast<std::int64_t>(read_be<std::uint64_t>()));
      case 'd': {
        std::uint32_t u = read_be<std::uint32_t>();
        float f;
        std::memcpy(&f, &u, 4);
        return static_cast<double>(f);
      }
      case 'D': {
        std::uint64_t u = read_be<std::uint64_t>();
        double d;
        std::memcpy(&d, &u, 8);
        return d;
      }
      case 'H': {
        std::string h = read_string_body();
        double d;
        if (!parse_double(h.data(), h.data() + h.size(), d)) fail("bad high-precision number");
        return d;
      }
      default: fail(std::string("expected a number type, got '") + t + "'");
    }
  }
  std::int64_t read_length() {
    char t = next_marker();
    double n = read_number(t);
    if (!(n >= 0) || n > 1e12) fail("bad length");
    return static_cast<std::int64_t>(n);
  }
  std::string read_string_body() {
    std::int64_t n = read_length();
    need(static_cast<std::size_t>(n));
    std::string out = s_.substr(pos_, static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return out;
  }
  static bool is_numeric_type(char t) {
    return t == 'i' || t == 'U' || t == 'I' || t == 'l' || t == 'L' || t == 'd' || t == 'D';
  }
  static std::size_t type_size(char t) {
    switch (t) {
      case 'i': case 'U': return 1;
      case 'I': return 2;
      case 'l': case 'd': return 4;
      default: return 8;
    }
  }

  JsonValue parse_value(char t, int depth) {
    if (depth > kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth));
    JsonValue v;
    switch (t) {
      case 'Z': return v;
      case 'T': v.type = JsonValue::Type::Bool; v.boolean = true; return v;
      case 'F': v.type = JsonValue::Type::Bool; v.boolean = false; return v;
      case 'i': case 'U': case 'I': case 'l': case 'L': case 'd': case 'D': case 'H':
        v.type = JsonValue::Type::Number;
        v.number = read_number(t);
        return v;
      case 'C':
        need(1);
        v.type = JsonValue::Type::String;
        v.string = std::string(1, s_[pos_++]);
        return v;
      case 'S':
        v.type = JsonValue::Type::String;
        v.string = read_string_body();
        return v;
      case '[': return parse_array(depth);
      case '{': return parse_object(depth);
      default: fail(std::string("unknown type marker '") + t + "'");
    }
  }

  /// The optional "$<type>" and "#<count>" of an optimized container.
  void read_container_header(char& elem_type, std::int64_t& count) {
    need(1);
    if (s_[pos_] == '$') {
      ++pos_;
      need(1);
      elem_type = s_[pos_++];
      need(1);
      if (s_[pos_] != '#') fail("typed container without count");
      ++pos_;
      count = read_length();
    } else if (s_[pos_] == '#') {
      ++pos_;
      count = read_length();
    }
  }

  JsonValue parse_array(int depth) {
    JsonValue v;
    v.type = JsonValue::Type::Array;
    char elem_type = 0;
    std::int64_t count = -1;
    read_container_header(elem_type, count);
    if (count >= 0) {
      if (elem_type != 0 && is_numeric_type(elem_type)) {
        need(static_cast<std::size_t>(count) * type_size(elem_type));
        v.type = JsonValue::Type::NumberArray;
        v.numbers.resize(static_cast<std::size_t>(count));
        for (std::int64_t i = 0; i < count; ++i) v.numbers[static_cast<std::size_t>(i)] = read_number(elem_type);
        return v;
      }
      // each element takes at least one byte unless typed with a zero-size marker; those
      // (null/true/false, which XGBoost never writes) still cost a JsonValue each: bound them
      // by the bytes left too, so that a 10-byte header cannot ask for gigabytes
      if (elem_type == 0 || (elem_type != 'Z' && elem_type != 'T' && elem_type != 'F')) need(static_cast<std::size_t>(count));
      else if (static_cast<std::size_t>(count) > s_.size() - pos_ + 4096)
        fail("typed array of " + std::to_string(count) + " zero-size elements is longer than the whole file");
      v.items.reserve(static_cast<std::size_t>(count));
      for (std::int64_t i = 0; i < count; ++i)
        v.items.push_back(parse_value(elem_type ? elem_type : next_marker(), depth + 1));
      return v;
    }
    while (true) {
      char m = next_marker();
      if (m == ']') break;
      v.items.push_back(parse_value(m, depth + 1));
    }
    return v;
  }

  JsonValue parse_object(int depth) {
    JsonValue v;
    v.type = JsonValue::Type::Object;
    char elem_type = 0;
    std::int64_t count = -1;
    read_container_header(elem_type, count);
    if (count >= 0) {
      need(static_cast<std::size_t>(count));
      for (std::int64_t i = 0; i < count; ++i) {
        std::string key = read_string_body();
        v.members.emplace_back(std::move(key), parse_value(elem_type ? elem_type : next_marker(), depth + 1));
      }
      return v;
    }
    while (true) {
      need(1);
      if (s_[pos_] == '}') { ++pos_; break; }
      std::string key = read_string_body();
      v.members.emplace_back(std::move(key), parse_value(next_marker(), depth + 1));
    }
    return v;
  }

  const std::string& s_;
  const std::string& src_;
  std::size_t pos_ = 0;
};

}  // namespace

JsonValue parse_json(const std::string& text, const std::string& source_name) {
  return TextParser(text, source_name).parse_document();
}

JsonValue parse_ubjson(const std::string& bytes, const std::string& source_name) {
  return UbjParser(bytes, source_name).parse_document();
}

// ---------------------------------------------------------------- reader helpers
void JsonReader::fail(const std::string& path, const std::string& what) const {
  throw ModelFormatError(source_ + ": " + path + ": " + what);
}

const JsonValue& JsonReader::member(const JsonValue& obj, const std::string& key, const std::string& path) const {
  if (!obj.is_object()) fail(path, "expected an object");
  const JsonValue* v = obj.find(key);
  if (!v) fail(path, "missing key '" + key + "'");
  return *v;
}

double JsonReader::number(const JsonValue& v, const std::string& path) const {
  if (v.type == JsonValue::Type::Number) return v.number;
  if (v.type == JsonValue::Type::Bool) return v.boolean ? 1.0 : 0.0;
  if (v.type == JsonValue::Type::String) {
    double d;
    if (parse_double(v.string.data(), v.string.data() + v.string.size(), d)) return d;
    fail(path, "expected a number, got the string '" + v.string + "'");
  }
  fail(path, "expected a number");
}

std::int64_t JsonReader::integer(const JsonValue& v, const std::string& path) const {
  double d = number(v, path);
  if (!(std::fabs(d) <= 9.0e15) || d != std::floor(d)) fail(path, "expected an integer");
  return static_cast<std::int64_t>(d);
}

std::string JsonReader::string(const JsonValue& v, const std::string& path) const {
  if (v.type != JsonValue::Type::String) fail(path, "expected a string");
  return v.string;
}

std::vector<double> JsonReader::numbers(const JsonValue& v, const std::string& path) const {
  if (v.type == JsonValue::Type::NumberArray) return v.numbers;
  if (v.type != JsonValue::Type::Array) fail(path, "expected an array");
  std::vector<double> out;
  out.reserve(v.items.size());
  for (std::size_t i = 0; i < v.items.size(); ++i) out.push_back(number(v.items[i], path + "[" + std::to_string(i) + "]"));
  return out;
}

std::vector<std::int64_t> JsonReader::integers(const JsonValue& v, const std::string& path) const {
  std::vector<double> d = numbers(v, path);
  std::vector<std::int64_t> out(d.size());
  for (std::size_t i = 0; i < d.size(); ++i) {
    if (!(std::fabs(d[i]) <= 9.0e15) || d[i] != std::floor(d[i]))
      fail(path + "[" + std::to_string(i) + "]", "expected an integer");
    out[i] = static_cast<std::int64_t>(d[i]);
  }
  return out;
}

}  // namespace hepinfer::detail
