#include "formats/xml.hpp"

#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hepinfer/errors.hpp"

namespace hepinfer::detail {

const std::string* XmlElement::attr(std::string_view attr_name) const noexcept {
  for (const XmlAttribute& a : attributes)
    if (a.name == attr_name) return &a.value;
  return nullptr;
}

const XmlElement* XmlDocument::child(const XmlElement& parent, std::string_view name) const noexcept {
  for (std::size_t c : parent.children)
    if (c < elements.size() && elements[c].name == name) return &elements[c];
  return nullptr;
}

std::vector<const XmlElement*> XmlDocument::children(const XmlElement& parent, std::string_view name) const {
  std::vector<const XmlElement*> out;
  for (std::size_t c : parent.children)
    if (c < elements.size() && elements[c].name == name) out.push_back(&elements[c]);
  return out;
}

namespace {

bool is_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

bool is_name_start(char c) noexcept {
  const auto u = static_cast<unsigned char>(c);
  return (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || u == '_' || u == ':' || u >= 0x80;
}

bool is_name_char(char c) noexcept {
  const auto u = static_cast<unsigned char>(c);
  return is_name_start(c) || (u >= '0' && u <= '9') || u == '-' || u == '.';
}

class Parser {
 public:
  Parser(std::string_view text, const std::string& source, std::size_t max_depth, std::size_t max_elements)
      : s_(text), src_(source), max_depth_(max_depth), max_elements_(max_elements) {}

  XmlDocument run() {
    // UTF-8 byte order mark
    if (s_.size() >= 3 && static_cast<unsigned char>(s_[0]) == 0xEF &&
        static_cast<unsigned char>(s_[1]) == 0xBB && static_cast<unsigned char>(s_[2]) == 0xBF)
      pos_ = 3;
    skip_misc(true);
    if (pos_ >= s_.size()) fail("no root element (empty or truncated document)");
    if (s_[pos_] != '<') fail("unexpected text before the root element");
    std::vector<std::size_t> stack;
    bool root_done = false;
    while (!root_done) {
      if (pos_ >= s_.size()) {
        fail("unexpected end of document inside element <" + doc_.elements[stack.back()].name +
             "> (truncated file?)");
      }
      if (s_[pos_] == '<') {
        if (starts_with("</")) {
          pos_ += 2;
          const std::string name = read_name("closing tag");
          skip_spaces();
          expect('>', "closing tag </" + name);
          if (stack.empty()) fail("unexpected closing tag </" + name + ">");
          const XmlElement& open = doc_.elements[stack.back()];
          if (open.name != name)
            fail("closing tag </" + name + "> does not match <" + open.name + "> opened at line " +
                 std::to_string(open.line));
          stack.pop_back();
          if (stack.empty()) root_done = true;
        } else if (starts_with("<!--")) {
          skip_comment();
        } else if (starts_with("<![CDATA[")) {
          if (stack.empty()) fail("CDATA outside the root element");
          pos_ += 9;
          const std::size_t end = s_.find("]]>", pos_);
          if (end == std::string_view::npos) fail("unterminated CDATA section");
          check_chars(pos_, end);
          doc_.elements[stack.back()].text.append(s_.substr(pos_, end - pos_));
          pos_ = end + 3;
        } else if (starts_with("<?")) {
          skip_pi();
        } else if (starts_with("<!")) {
          fail("unexpected markup declaration inside an element");
        } else {
          if (!stack.empty() || doc_.elements.empty()) {
            const std::size_t idx = read_start_tag(stack.empty() ? XmlElement::npos : stack.back());
            const bool empty = last_tag_empty_;
            if (!empty) {
              stack.push_back(idx);
              if (stack.size() > max_depth_)
                fail("elements nested deeper than " + std::to_string(max_depth_) + " levels");
            } else if (stack.empty()) {
              root_done = true;
            }
          } else {
            fail("more than one root element");
          }
        }
      } else {
        if (stack.empty()) fail("unexpected text outside the root element");
        read_text(doc_.elements[stack.back()].text);
      }
    }
    skip_misc(false);
    if (pos_ < s_.size()) fail("unexpected content after the root element");
    return std::move(doc_);
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { fail_at(pos_, what); }

  [[noreturn]] void fail_at(std::size_t at, const std::string& what) const {
    throw ModelFormatError(src_ + ": XML error at line " + std::to_string(line_of(at)) + ": " + what);
  }

  /// 1-based line number of byte offset `at` (monotonic cache; falls back to a rescan).
  std::size_t line_of(std::size_t at) const {
    if (at > s_.size()) at = s_.size();
    if (at < line_pos_) {
      line_pos_ = 0;
      line_no_ = 1;
    }
    for (std::size_t i = line_pos_; i < at; ++i)
      if (s_[i] == '\n') ++line_no_;
    line_pos_ = at;
    return line_no_;
  }

  bool starts_with(std::string_view p) const noexcept {
    return s_.size() - pos_ >= p.size() && s_.compare(pos_, p.size(), p) == 0;
  }

  void skip_spaces() noexcept {
    while (pos_ < s_.size() && is_space(s_[pos_])) ++pos_;
  }

  void expect(char c, const std::string& where) {
    if (pos_ >= s_.size()) fail("unexpected end of document in " + where + " (truncated file?)");
    if (s_[pos_] != c) fail(std::string("expected '") + c + "' in " + where);
    ++pos_;
  }

  void check_chars(std::size_t from, std::size_t to) const {
    const void* nul = std::memchr(s_.data() + from, '\0', to - from);
    if (nul != nullptr)
      fail_at(static_cast<std::size_t>(static_cast<const char*>(nul) - s_.data()), "NUL character in document");
  }

  /// whitespace, comments, processing instructions (and, in the prolog, one DOCTYPE)
  void skip_misc(bool prolog) {
    bool seen_doctype = false;
    for (;;) {
      skip_spaces();
      if (pos_ >= s_.size()) return;
      if (starts_with("<!--")) {
        skip_comment();
      } else if (starts_with("<?")) {
        skip_pi();
      } else if (prolog && !seen_doctype && starts_with("<!DOCTYPE")) {
        skip_doctype();
        seen_doctype = true;
      } else {
        return;
      }
    }
  }

  void skip_comment() {
    const std::size_t end = s_.find("-->", pos_ + 4);
    if (end == std::string_view::npos) fail("unterminated comment");
    pos_ = end + 3;
  }

  void skip_pi() {
    const std::size_t end = s_.find("?>", pos_ + 2);
    if (end == std::string_view::npos) fail("unterminated processing instruction");
    pos_ = end + 2;
  }

  void skip_doctype() {
    std::size_t i = pos_ + 9;
    char quote = 0;
    bool in_subset = false;
    for (; i < s_.size(); ++i) {
      const char c = s_[i];
      if (quote != 0) {
        if (c == quote) quote = 0;
      } else if (c == '"' || c == '\'') {
        quote = c;
      } else if (c == '[') {
        in_subset = true;
      } else if (c == ']') {
        in_subset = false;
      } else if (c == '>' && !in_subset) {
        pos_ = i + 1;
        return;
      }
    }
    fail("unterminated DOCTYPE declaration");
  }

  std::string read_name(const char* what) {
    if (pos_ >= s_.size()) fail(std::string("unexpected end of document in ") + what + " (truncated file?)");
    if (!is_name_start(s_[pos_])) fail(std::string("invalid name in ") + what);
    const std::size_t begin = pos_;
    while (pos_ < s_.size() && is_name_char(s_[pos_])) ++pos_;
    return std::string(s_.substr(begin, pos_ - begin));
  }

  /// Appends the decoded character reference or entity at pos_ ('&') to out.
  void read_reference(std::string& out) {
    const std::size_t start = pos_;
    const std::size_t semi = s_.find(';', pos_);
    if (semi == std::string_view::npos || semi - pos_ > 12) fail_at(start, "unterminated entity reference");
    const std::string_view ent = s_.substr(pos_ + 1, semi - pos_ - 1);
    pos_ = semi + 1;
    if (ent == "lt") { out.push_back('<'); return; }
    if (ent == "gt") { out.push_back('>'); return; }
    if (ent == "amp") { out.push_back('&'); return; }
    if (ent == "quot") { out.push_back('"'); return; }
    if (ent == "apos") { out.push_back('\''); return; }
    if (ent.size() >= 2 && ent[0] == '#') {
      std::uint32_t cp = 0;
      const bool hex = ent[1] == 'x';
      const std::string_view digits = ent.substr(hex ? 2 : 1);
      if (digits.empty()) fail_at(start, "empty character reference");
      for (char c : digits) {
        std::uint32_t d;
        if (c >= '0' && c <= '9') d = static_cast<std::uint32_t>(c - '0');
        else if (hex && c >= 'a' && c <= 'f') d = static_cast<std::uint32_t>(c - 'a' + 10);
        else if (hex && c >= 'A' && c <= 'F') d = static_cast<std::uint32_t>(c - 'A' + 10);
        else fail_at(start, "invalid character reference &" + std::string(ent) + ";");
        cp = cp * (hex ? 16u : 10u) + d;
        if (cp > 0x10FFFFu) fail_at(start, "character reference out of range");
      }
      if (cp == 0 || (cp >= 0xD800u && cp <= 0xDFFFu)) fail_at(start, "invalid character reference");
      append_utf8(out, cp);
      return;
    }
    fail_at(start, "unknown entity &" + std::string(ent) + ";");
  }

  static void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0u | (cp >> 6)));
      out.push_back(static_cast<char>(0x80u | (cp & 0x3Fu)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0u | (cp >> 12)));
      out.push_back(static_cast<char>(0x80u | ((cp >> 6) & 0x3Fu)));
      out.push_back(static_cast<char>(0x80u | (cp & 0x3Fu)));
    } else {
      out.push_back(static_cast<char>(0xF0u | (cp >> 18)));
      out.push_back(static_cast<char>(0x80u | ((cp >> 12) & 0x3Fu)));
      out.push_back(static_cast<char>(0x80u | ((cp >> 6) & 0x3Fu)));
      out.push_back(static_cast<char>(0x80u | (cp & 0x3Fu)));
    }
  }

  /// character data up to the next '<'
  void read_text(std::string& out) {
    while (pos_ < s_.size() && s_[pos_] != '<') {
      const char c = s_[pos_];
      if (c == '&') {
        read_reference(out);
      } else if (c == '\0') {
        fail("NUL character in document");
      } else {
        // copy a run of plain characters at once
        std::size_t end = pos_ + 1;
        while (end < s_.size() && s_[end] != '<' && s_[end] != '&' && s_[end] != '\0') ++end;
        out.append(s_.substr(pos_, end - pos_));
        pos_ = end;
      }
    }
  }

  std::size_t read_start_tag(std::size_t parent) {
    const std::size_t tag_pos = pos_;
    ++pos_;  // '<'
    if (doc_.elements.size() >= max_elements_)
      fail("more than " + std::to_string(max_elements_) + " elements");
    XmlElement el;
    el.line = line_of(tag_pos);
    el.parent = parent;
    el.name = read_name("start tag");
    const std::string where = "start tag <" + el.name + ">";
    for (;;) {
      const std::size_t before = pos_;
      skip_spaces();
      if (pos_ >= s_.size()) fail("unexpected end of document in " + where + " (truncated file?)");
      const char c = s_[pos_];
      if (c == '>') {
        ++pos_;
        last_tag_empty_ = false;
        break;
      }
      if (c == '/') {
        ++pos_;
        expect('>', where);
        last_tag_empty_ = true;
        break;
      }
      if (pos_ == before) fail("expected whitespace before attribute in " + where);
      XmlAttribute a;
      a.name = read_name(where.c_str());
      skip_spaces();
      expect('=', "attribute " + a.name + " of " + where);
      skip_spaces();
      if (pos_ >= s_.size()) fail("unexpected end of document in " + where + " (truncated file?)");
      const char quote = s_[pos_];
      if (quote != '"' && quote != '\'') fail("attribute value of " + a.name + " in " + where + " is not quoted");
      ++pos_;
      for (;;) {
        if (pos_ >= s_.size())
          fail("unterminated value of attribute " + a.name + " in " + where + " (truncated file?)");
        const char v = s_[pos_];
        if (v == quote) {
          ++pos_;
          break;
        }
        if (v == '<') fail("'<' in the value of attribute " + a.name + " in " + where);
        if (v == '\0') fail("NUL character in document");
        if (v == '&') {
          read_reference(a.value);
        } else {
          a.value.push_back(v);
          ++pos_;
        }
      }
      for (const XmlAttribute& other : el.attributes)
        if (other.name == a.name) fail("duplicate attribute " + a.name + " in " + where);
      el.attributes.push_back(std::move(a));
    }
    const std::size_t idx = doc_.elements.size();
    doc_.elements.push_back(std::move(el));
    if (parent != XmlElement::npos) doc_.elements[parent].children.push_back(idx);
    return idx;
  }

  std::string_view s_;
  const std::string& src_;
  std::size_t max_depth_;
  std::size_t max_elements_;
  std::size_t pos_ = 0;
  bool last_tag_empty_ = false;
  mutable std::size_t line_pos_ = 0;
  mutable std::size_t line_no_ = 1;
  XmlDocument doc_;
};

}  // namespace

XmlDocument parse_xml(std::string_view text, const std::string& source_name, std::size_t max_depth,
                      std::size_t max_elements) {
  Parser p(text, source_name, max_depth == 0 ? 1 : max_depth, max_elements == 0 ? 1 : max_elements);
  return p.run();
}

}  // namespace hepinfer::detail
