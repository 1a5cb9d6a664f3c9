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

inline bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

/// Characters of a number token (strtod decides whether the token is a number).
inline bool is_number_char(char d) {
  return (d >= '0' && d <= '9') || d == '-' || d == '+' || d == '.' || d == 'e' || d == 'E' || d == 'i' || d == 'n' ||
         d == 'f' || d == 'I' || d == 'N' || d == 'F' || d == 'a' || d == 'A' || d == 't' || d == 'y';
}

inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

/// -?digits(.digits)?([eE][+-]?digits)?: a token that strtod reads whole (checked without strtod).
bool plain_decimal(const char* p, const char* e) {
  if (e - p > 512) return false;
  if (p < e && *p == '-') ++p;
  const char* d = p;
  while (p < e && is_digit(*p)) ++p;
  if (p == d) return false;
  if (p < e && *p == '.') {
    d = ++p;
    while (p < e && is_digit(*p)) ++p;
    if (p == d) return false;
  }
  if (p < e && (*p == 'e' || *p == 'E')) {
    ++p;
    if (p < e && (*p == '+' || *p == '-')) ++p;
    d = p;
    while (p < e && is_digit(*p)) ++p;
    if (p == d) return false;
  }
  return p == e;
}

/// Validates JSON text without building anything (depth-limited recursion), and decodes strings.
class TextParser {
 public:
  TextParser(std::string_view text, const std::string& source, std::size_t pos = 0)
      : s_(text), src_(source), pos_(pos) {}

  /// Validates the whole document; returns the offset of the root value.
  std::size_t validate_document() {
    skip_ws();
    const std::size_t root = pos_;
    parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected trailing characters");
    return root;
  }

  /// The string at pos_ (its opening quote), decoded.
  std::string decode_string() {
    std::string out;
    parse_string(&out);
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw ModelFormatError(src_ + ": invalid JSON at byte " + std::to_string(pos_) + ": " + what);
  }
  void skip_ws() {
    while (pos_ < s_.size() && is_ws(s_[pos_])) ++pos_;
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

  void parse_value(int depth) {
    if (depth > kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth));
    char c = peek();
    if (c == '{') {
      ++pos_;
      skip_ws();
      if (peek() == '}') {
        ++pos_;
        return;
      }
      while (true) {
        skip_ws();
        if (peek() != '"') fail("expected a member name");
        parse_string(nullptr);
        skip_ws();
        expect(':');
        skip_ws();
        parse_value(depth + 1);
        skip_ws();
        char d = peek();
        ++pos_;
        if (d == '}') break;
        if (d != ',') {
          --pos_;
          fail("expected ',' or '}'");
        }
      }
    } else if (c == '[') {
      ++pos_;
      skip_ws();
      if (peek() == ']') {
        ++pos_;
        return;
      }
      while (true) {
        skip_ws();
        parse_value(depth + 1);
        skip_ws();
        char d = peek();
        ++pos_;
        if (d == ']') break;
        if (d != ',') {
          --pos_;
          fail("expected ',' or ']'");
        }
      }
    } else if (c == '"') {
      parse_string(nullptr);
    } else if (c == 't' || c == 'f' || c == 'n') {
      if (s_.compare(pos_, 4, "true") == 0) pos_ += 4;
      else if (s_.compare(pos_, 5, "false") == 0) pos_ += 5;
      else if (s_.compare(pos_, 4, "null") == 0) pos_ += 4;
      else if (s_.compare(pos_, 3, "nan") == 0) pos_ += 3;
      else fail("unexpected literal");
    } else {
      std::size_t start = pos_;
      while (pos_ < s_.size() && is_number_char(s_[pos_])) ++pos_;
      if (start == pos_) fail(std::string("unexpected character '") + c + "'");
      double ignored;
      if (!plain_decimal(s_.data() + start, s_.data() + pos_) &&
          !parse_double(s_.data() + start, s_.data() + pos_, ignored)) {
        pos_ = start;
        fail("malformed number");
      }
    }
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

  /// The string at pos_; decoded into *out unless out is null (validation only).
  void parse_string(std::string* out) {
    expect('"');
    while (true) {
      // a run of plain characters at once
      std::size_t run = pos_;
      while (run < s_.size() && s_[run] != '"' && s_[run] != '\\') ++run;
      if (out != nullptr) out->append(s_.data() + pos_, run - pos_);
      pos_ = run;
      char c = peek();
      ++pos_;
      if (c == '"') break;
      char e = peek();
      ++pos_;
      char plain = 0;
      switch (e) {
        case '"': plain = '"'; break;
        case '\\': plain = '\\'; break;
        case '/': plain = '/'; break;
        case 'b': plain = '\b'; break;
        case 'f': plain = '\f'; break;
        case 'n': plain = '\n'; break;
        case 'r': plain = '\r'; break;
        case 't': plain = '\t'; break;
        case 'u': {
          unsigned cp = parse_hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && pos_ + 6 <= s_.size() && s_[pos_] == '\\' && s_[pos_ + 1] == 'u') {
            pos_ += 2;
            unsigned lo = parse_hex4();
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          if (out != nullptr) put_utf8(*out, cp);
          continue;
        }
        default: fail("bad escape");
      }
      if (out != nullptr) *out += plain;
    }
  }

  std::string_view s_;
  const std::string& src_;
  std::size_t pos_ = 0;
};

// Reading a validated JSON text: no bounds or syntax checks needed beyond those below.
std::size_t text_skip_ws(std::string_view s, std::size_t p) {
  while (p < s.size() && is_ws(s[p])) ++p;
  return p;
}

/// p at an opening quote; returns the offset after the closing quote.
std::size_t text_skip_string(std::string_view s, std::size_t p) {
  ++p;
  while (true) {
    const char c = s[p];
    if (c == '"') return p + 1;
    p += c == '\\' ? 2 : 1;
  }
}

/// p at a value; returns the offset just after it.
std::size_t text_skip_value(std::string_view s, std::size_t p) {
  const char c = s[p];
  if (c == '"') return text_skip_string(s, p);
  if (c == '{' || c == '[') {
    std::size_t depth = 0;
    while (true) {
      const char d = s[p];
      if (d == '"') {
        p = text_skip_string(s, p);
        continue;
      }
      if (d == '{' || d == '[') {
        ++depth;
      } else if (d == '}' || d == ']') {
        if (--depth == 0) return p + 1;
      }
      ++p;
    }
  }
  while (p < s.size()) {
    const char d = s[p];
    if (d == ',' || d == ']' || d == '}' || is_ws(d)) break;
    ++p;
  }
  return p;
}

// ---------------------------------------------------------------- UBJSON
/// Validates UBJSON without building anything (depth-limited recursion); also reads values in place.
class UbjParser {
 public:
  UbjParser(std::string_view bytes, const std::string& source, std::size_t pos = 0)
      : s_(bytes), src_(source), pos_(pos) {}

  /// Validates the whole document; returns the root's marker and sets root_pos to its payload.
  char validate_document(std::size_t& root_pos) {
    const char m = next_marker();
    root_pos = pos_;
    skip_value(m, 0);
    while (pos_ < s_.size() && s_[pos_] == 'N') ++pos_;  // no-op markers
    if (pos_ != s_.size()) fail("unexpected trailing bytes");
    return m;
  }

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
        const std::string_view h = read_string_view();
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
  std::string_view read_string_view() {
    std::int64_t n = read_length();
    need(static_cast<std::size_t>(n));
    std::string_view out = s_.substr(pos_, static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return out;
  }
  static bool is_numeric_type(char t) {
    return t == 'i' || t == 'U' || t == 'I' || t == 'l' || t == 'L' || t == 'd' || t == 'D';
  }
  static std::size_t type_size(char t) {
    switch (t) {
      case 'i':
      case 'U': return 1;
      case 'I': return 2;
      case 'l':
      case 'd': return 4;
      default: return 8;
    }
  }

  /// Validates the value of type `t` whose payload starts at pos_, and moves past it.
  void skip_value(char t, int depth) {
    if (depth > kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth));
    switch (t) {
      case 'Z':
      case 'T':
      case 'F': return;
      case 'i':
      case 'U':
      case 'I':
      case 'l':
      case 'L':
      case 'd':
      case 'D':
      case 'H': read_number(t); return;
      case 'C':
        need(1);
        ++pos_;
        return;
      case 'S': read_string_view(); return;
      case '[': skip_array(depth); return;
      case '{': skip_object(depth); return;
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

  std::size_t pos() const { return pos_; }

 private:
  void skip_array(int depth) {
    char elem_type = 0;
    std::int64_t count = -1;
    read_container_header(elem_type, count);
    if (count >= 0) {
      if (elem_type != 0 && is_numeric_type(elem_type)) {
        need(static_cast<std::size_t>(count) * type_size(elem_type));
        pos_ += static_cast<std::size_t>(count) * type_size(elem_type);
        return;
      }
      // each element takes at least one byte unless typed with a zero-size marker (null/true/false,
      // which XGBoost never writes): bound those by the bytes left too, so that a 10-byte header
      // cannot ask for a walk over gigabytes of nothing
      if (elem_type == 0 || (elem_type != 'Z' && elem_type != 'T' && elem_type != 'F'))
        need(static_cast<std::size_t>(count));
      else if (static_cast<std::size_t>(count) > s_.size() - pos_ + 4096)
        fail("typed array of " + std::to_string(count) + " zero-size elements is longer than the whole file");
      for (std::int64_t i = 0; i < count; ++i) skip_value(elem_type ? elem_type : next_marker(), depth + 1);
      return;
    }
    while (true) {
      char m = next_marker();
      if (m == ']') break;
      skip_value(m, depth + 1);
    }
  }

  void skip_object(int depth) {
    char elem_type = 0;
    std::int64_t count = -1;
    read_container_header(elem_type, count);
    if (count >= 0) {
      need(static_cast<std::size_t>(count));
      for (std::int64_t i = 0; i < count; ++i) {
        read_string_view();
        skip_value(elem_type ? elem_type : next_marker(), depth + 1);
      }
      return;
    }
    while (true) {
      need(1);
      if (s_[pos_] == '}') {
        ++pos_;
        break;
      }
      read_string_view();
      skip_value(next_marker(), depth + 1);
    }
  }

  std::string_view s_;
  const std::string& src_;
  std::size_t pos_ = 0;
};

}  // namespace

// ---------------------------------------------------------------- document and values
JsonDocument::JsonDocument(std::string_view bytes, std::string source, bool ubj)
    : s_(bytes), src_(std::move(source)), ubj_(ubj) {
  if (ubj_) {
    root_marker_ = UbjParser(s_, src_).validate_document(root_pos_);
  } else {
    root_pos_ = TextParser(s_, src_).validate_document();
    root_marker_ = s_[root_pos_];
  }
}

JsonDocument parse_json(const std::string& text, const std::string& source_name) {
  return JsonDocument(text, source_name, false);
}

JsonDocument parse_ubjson(const std::string& bytes, const std::string& source_name) {
  return JsonDocument(bytes, source_name, true);
}

JsonValue::JsonValue(const JsonDocument* doc, std::size_t pos, char marker) : doc_(doc), pos_(pos), marker_(marker) {
  const std::string_view s = doc->bytes();
  if (doc->ubjson()) {
    switch (marker) {
      case 'Z': type = Type::Null; break;
      case 'T':
      case 'F': type = Type::Bool; break;
      case 'C':
      case 'S': type = Type::String; break;
      case '{': type = Type::Object; break;
      case '[':
        type = pos + 1 < s.size() && s[pos] == '$' && UbjParser::is_numeric_type(s[pos + 1]) ? Type::NumberArray
                                                                                             : Type::Array;
        break;
      default: type = Type::Number; break;
    }
  } else {
    switch (marker) {
      case '{': type = Type::Object; break;
      case '[': type = Type::Array; break;
      case '"': type = Type::String; break;
      case 't':
      case 'f': type = Type::Bool; break;
      case 'n': type = pos + 1 < s.size() && s[pos + 1] == 'u' ? Type::Null : Type::Number; break;  // null, nan
      default: type = Type::Number; break;
    }
  }
}

void JsonValue::for_each_member(const std::function<bool(std::string_view, const JsonValue&)>& f) const {
  if (type != Type::Object) return;
  const std::string_view s = doc_->bytes();
  if (doc_->ubjson()) {
    UbjParser p(s, doc_->source(), pos_);
    char elem_type = 0;
    std::int64_t count = -1;
    p.read_container_header(elem_type, count);
    for (std::int64_t i = 0; count < 0 || i < count; ++i) {
      if (count < 0 && s[p.pos()] == '}') return;
      const std::string_view key = p.read_string_view();
      const char m = elem_type ? elem_type : p.next_marker();
      const JsonValue v(doc_, p.pos(), m);
      if (!f(key, v)) return;
      p.skip_value(m, 0);
    }
    return;
  }
  std::size_t p = text_skip_ws(s, pos_ + 1);
  if (s[p] == '}') return;
  std::string decoded;
  while (true) {
    const std::size_t key_begin = p;
    p = text_skip_string(s, p);
    std::string_view key = s.substr(key_begin + 1, p - key_begin - 2);
    if (key.find('\\') != std::string_view::npos) {
      decoded = TextParser(s, doc_->source(), key_begin).decode_string();
      key = decoded;
    }
    p = text_skip_ws(s, p) + 1;  // ':'
    p = text_skip_ws(s, p);
    if (!f(key, JsonValue(doc_, p, s[p]))) return;
    p = text_skip_ws(s, text_skip_value(s, p));
    if (s[p] != ',') return;  // '}'
    p = text_skip_ws(s, p + 1);
  }
}

void JsonValue::for_each_item(const std::function<bool(const JsonValue&)>& f) const {
  if (type != Type::Array) return;
  const std::string_view s = doc_->bytes();
  if (doc_->ubjson()) {
    UbjParser p(s, doc_->source(), pos_);
    char elem_type = 0;
    std::int64_t count = -1;
    p.read_container_header(elem_type, count);
    for (std::int64_t i = 0; count < 0 || i < count; ++i) {
      const char m = elem_type ? elem_type : p.next_marker();
      if (count < 0 && m == ']') return;
      const JsonValue v(doc_, p.pos(), m);
      if (!f(v)) return;
      p.skip_value(m, 0);
    }
    return;
  }
  std::size_t p = text_skip_ws(s, pos_ + 1);
  if (s[p] == ']') return;
  while (true) {
    if (!f(JsonValue(doc_, p, s[p]))) return;
    p = text_skip_ws(s, text_skip_value(s, p));
    if (s[p] != ',') return;  // ']'
    p = text_skip_ws(s, p + 1);
  }
}

std::size_t JsonValue::size() const {
  if (!is_array()) return 0;
  if (doc_->ubjson()) {
    UbjParser p(doc_->bytes(), doc_->source(), pos_);
    char elem_type = 0;
    std::int64_t count = -1;
    p.read_container_header(elem_type, count);
    if (count >= 0) return static_cast<std::size_t>(count);
  }
  std::size_t n = 0;
  for_each_item([&n](const JsonValue&) {
    ++n;
    return true;
  });
  return n;
}

std::optional<JsonValue> JsonValue::find(std::string_view key) const {
  std::optional<JsonValue> out;
  for_each_member([&](std::string_view k, const JsonValue& v) {
    if (k != key) return true;
    out = v;
    return false;
  });
  return out;
}

// ---------------------------------------------------------------- reader helpers
namespace {

/// The number at a validated JSON text value (a number token or the literal nan).
double text_number(std::string_view s, std::size_t pos, const std::string& source) {
  if (s[pos] == 'n') return std::numeric_limits<double>::quiet_NaN();
  std::size_t end = pos;
  while (end < s.size() && is_number_char(s[end])) ++end;
  double d;
  if (!parse_double(s.data() + pos, s.data() + end, d))  // validated: only a changed C locale gets here
    throw ModelFormatError(source + ": invalid JSON at byte " + std::to_string(pos) + ": malformed number");
  return d;
}

}  // namespace

void JsonReader::fail(const std::string& path, const std::string& what) const {
  throw ModelFormatError(source_ + ": " + path + ": " + what);
}

JsonValue JsonReader::member(const JsonValue& obj, const std::string& key, const std::string& path) const {
  if (!obj.is_object()) fail(path, "expected an object");
  std::optional<JsonValue> v = obj.find(key);
  if (!v) fail(path, "missing key '" + key + "'");
  return *v;
}

double JsonReader::number(const JsonValue& v, const std::string& path) const {
  const JsonDocument& doc = *v.doc_;
  if (v.type == JsonValue::Type::Number) {
    if (!doc.ubjson()) return text_number(doc.bytes(), v.pos_, doc.source());
    return UbjParser(doc.bytes(), doc.source(), v.pos_).read_number(v.marker_);
  }
  if (v.type == JsonValue::Type::Bool) return v.marker_ == 't' || v.marker_ == 'T' ? 1.0 : 0.0;
  if (v.type == JsonValue::Type::String) {
    const std::string s = string(v, path);
    double d;
    if (parse_double(s.data(), s.data() + s.size(), d)) return d;
    fail(path, "expected a number, got the string '" + s + "'");
  }
  fail(path, "expected a number");
}

double JsonReader::item_number(const JsonValue& v, const std::string& path, std::size_t index) const {
  if (v.type == JsonValue::Type::Number) {
    const JsonDocument& doc = *v.doc_;
    if (!doc.ubjson()) return text_number(doc.bytes(), v.pos_, doc.source());
    return UbjParser(doc.bytes(), doc.source(), v.pos_).read_number(v.marker_);
  }
  return number(v, path + "[" + std::to_string(index) + "]");
}

std::int64_t JsonReader::integer(const JsonValue& v, const std::string& path) const {
  double d = number(v, path);
  if (!(std::fabs(d) <= 9.0e15) || d != std::floor(d)) fail(path, "expected an integer");
  return static_cast<std::int64_t>(d);
}

std::string JsonReader::string(const JsonValue& v, const std::string& path) const {
  if (v.type != JsonValue::Type::String) fail(path, "expected a string");
  const JsonDocument& doc = *v.doc_;
  if (!doc.ubjson()) return TextParser(doc.bytes(), doc.source(), v.pos_).decode_string();
  if (v.marker_ == 'C') return std::string(1, doc.bytes()[v.pos_]);
  return std::string(UbjParser(doc.bytes(), doc.source(), v.pos_).read_string_view());
}

std::vector<double> JsonReader::numbers(const JsonValue& v, const std::string& path) const {
  std::vector<double> out;
  if (v.type == JsonValue::Type::NumberArray) {
    UbjParser p(v.doc_->bytes(), v.doc_->source(), v.pos_);
    char elem_type = 0;
    std::int64_t count = -1;
    p.read_container_header(elem_type, count);
    out.resize(static_cast<std::size_t>(count));
    for (double& d : out) d = p.read_number(elem_type);
    return out;
  }
  if (v.type != JsonValue::Type::Array) fail(path, "expected an array");
  out.reserve(v.size());
  v.for_each_item([&](const JsonValue& item) {
    out.push_back(item_number(item, path, out.size()));
    return true;
  });
  return out;
}

std::vector<std::int64_t> JsonReader::integers(const JsonValue& v, const std::string& path) const {
  std::vector<std::int64_t> out;
  auto put = [&](double d) {
    if (!(std::fabs(d) <= 9.0e15) || d != std::floor(d))
      fail(path + "[" + std::to_string(out.size()) + "]", "expected an integer");
    out.push_back(static_cast<std::int64_t>(d));
  };
  if (v.type == JsonValue::Type::NumberArray) {
    UbjParser p(v.doc_->bytes(), v.doc_->source(), v.pos_);
    char elem_type = 0;
    std::int64_t count = -1;
    p.read_container_header(elem_type, count);
    out.reserve(static_cast<std::size_t>(count));
    for (std::int64_t i = 0; i < count; ++i) put(p.read_number(elem_type));
    return out;
  }
  if (v.type != JsonValue::Type::Array) fail(path, "expected an array");
  out.reserve(v.size());
  v.for_each_item([&](const JsonValue& item) {
    put(item_number(item, path, out.size()));
    return true;
  });
  return out;
}

}  // namespace hepinfer::detail
