#include "formats/xml.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hepinfer/errors.hpp"

namespace hepinfer::detail {

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

void append_utf8(std::string& out, std::uint32_t cp) {
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

/// Decodes the character reference or entity at s[pos] ('&') into *out (when not null) and
/// returns the offset after its ';'; returns npos with `error` set when it is invalid.
std::size_t decode_reference(std::string_view s, std::size_t pos, std::string* out, const char*& error,
                             std::string& detail) {
  const std::size_t semi = s.find(';', pos);
  if (semi == std::string_view::npos || semi - pos > 12) {
    error = "unterminated entity reference";
    return std::string_view::npos;
  }
  const std::string_view ent = s.substr(pos + 1, semi - pos - 1);
  char plain = 0;
  if (ent == "lt") plain = '<';
  else if (ent == "gt") plain = '>';
  else if (ent == "amp") plain = '&';
  else if (ent == "quot") plain = '"';
  else if (ent == "apos") plain = '\'';
  if (plain != 0) {
    if (out != nullptr) out->push_back(plain);
    return semi + 1;
  }
  if (ent.size() >= 2 && ent[0] == '#') {
    std::uint32_t cp = 0;
    const bool hex = ent[1] == 'x';
    const std::string_view digits = ent.substr(hex ? 2 : 1);
    if (digits.empty()) {
      error = "empty character reference";
      return std::string_view::npos;
    }
    for (char c : digits) {
      std::uint32_t d;
      if (c >= '0' && c <= '9') d = static_cast<std::uint32_t>(c - '0');
      else if (hex && c >= 'a' && c <= 'f') d = static_cast<std::uint32_t>(c - 'a' + 10);
      else if (hex && c >= 'A' && c <= 'F') d = static_cast<std::uint32_t>(c - 'A' + 10);
      else {
        error = "invalid character reference &";
        detail = std::string(ent) + ";";
        return std::string_view::npos;
      }
      cp = cp * (hex ? 16u : 10u) + d;
      if (cp > 0x10FFFFu) {
        error = "character reference out of range";
        return std::string_view::npos;
      }
    }
    if (cp == 0 || (cp >= 0xD800u && cp <= 0xDFFFu)) {
      error = "invalid character reference";
      return std::string_view::npos;
    }
    if (out != nullptr) append_utf8(*out, cp);
    return semi + 1;
  }
  error = "unknown entity &";
  detail = std::string(ent) + ";";
  return std::string_view::npos;
}

// ---- reading a validated document: no syntax checks needed

std::size_t skip_name(std::string_view s, std::size_t p) {
  while (p < s.size() && is_name_char(s[p])) ++p;
  return p;
}

/// Appends the decoded [from, to) (character data or an attribute value) to out.
void decode_into(std::string& out, std::string_view s, std::size_t from, std::size_t to) {
  while (from < to) {
    const std::size_t amp = s.substr(0, to).find('&', from);
    const std::size_t run_end = amp == std::string_view::npos ? to : amp;
    out.append(s.data() + from, run_end - from);
    if (run_end == to) return;
    const char* error = nullptr;
    std::string detail;
    from = decode_reference(s, amp, &out, error, detail);
    if (from == std::string_view::npos) return;  // cannot happen in a validated document
  }
}

struct TagEnd {
  std::size_t after;  ///< offset after the tag's '>'
  bool empty;         ///< "/>"
};

/// p at a start tag's '<': where it ends (quoted attribute values may hold '>' and '/').
TagEnd scan_start_tag(std::string_view s, std::size_t p) {
  p = skip_name(s, p + 1);
  while (true) {
    const char c = s[p];
    if (c == '"' || c == '\'') {
      p = s.find(c, p + 1) + 1;
    } else if (c == '>') {
      return {p + 1, false};
    } else if (c == '/') {
      return {p + 2, true};
    } else {
      ++p;
    }
  }
}

/// p after '<!--', '<?' or '<![CDATA[' at offset `at`: the offset after the construct.
std::size_t skip_markup(std::string_view s, std::size_t at) {
  if (s.compare(at, 4, "<!--") == 0) return s.find("-->", at + 4) + 3;
  if (s.compare(at, 9, "<![CDATA[") == 0) return s.find("]]>", at + 9) + 3;
  return s.find("?>", at + 2) + 2;  // "<?"
}

/// p at a start tag's '<': the offset after the element's end (its end tag or "/>").
std::size_t skip_element(std::string_view s, std::size_t p) {
  std::size_t depth = 0;
  while (true) {
    const std::size_t lt = s.find('<', p);
    if (s.compare(lt, 2, "</") == 0) {
      p = s.find('>', lt) + 1;
      if (--depth == 0) return p;
    } else if (s.compare(lt, 2, "<!") == 0 || s.compare(lt, 2, "<?") == 0) {
      p = skip_markup(s, lt);
    } else {
      const TagEnd t = scan_start_tag(s, lt);
      p = t.after;
      if (!t.empty) ++depth;
      else if (depth == 0) return p;
    }
  }
}

}  // namespace

// ---------------------------------------------------------------- the validating parser
class XmlParser {
 public:
  XmlParser(std::string_view text, const std::string& source, std::size_t max_depth, std::size_t max_elements)
      : s_(text), src_(source), max_depth_(max_depth), max_elements_(max_elements) {}

  std::unique_ptr<XmlDocument> run() {
    doc_.reset(new XmlDocument(s_, src_));
    if (s_.size() >= std::numeric_limits<std::uint32_t>::max())
      throw ModelFormatError(src_ + ": XML documents of 4 GiB or more are not supported");
    // UTF-8 byte order mark
    if (s_.size() >= 3 && static_cast<unsigned char>(s_[0]) == 0xEF && static_cast<unsigned char>(s_[1]) == 0xBB &&
        static_cast<unsigned char>(s_[2]) == 0xBF)
      pos_ = 3;
    skip_misc(true);
    if (pos_ >= s_.size()) fail("no root element (empty or truncated document)");
    if (s_[pos_] != '<') fail("unexpected text before the root element");
    std::vector<std::uint32_t> stack;  // open elements
    bool root_done = false;
    while (!root_done) {
      if (pos_ >= s_.size()) {
        fail("unexpected end of document inside element <" + std::string(name_of(stack.back())) +
             "> (truncated file?)");
      }
      if (s_[pos_] == '<') {
        if (starts_with("</")) {
          pos_ += 2;
          const std::string_view name = read_name("closing tag");
          skip_spaces();
          expect('>', "closing tag </" + std::string(name));
          if (stack.empty()) fail("unexpected closing tag </" + std::string(name) + ">");
          const std::uint32_t open = stack.back();
          if (name_of(open) != name)
            fail("closing tag </" + std::string(name) + "> does not match <" + std::string(name_of(open)) +
                 "> opened at line " + std::to_string(line_at(doc_->rec(open).begin)));
          doc_->rec(open).next = static_cast<std::uint32_t>(doc_->n_);
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
          pos_ = end + 3;
        } else if (starts_with("<?")) {
          skip_pi();
        } else if (starts_with("<!")) {
          fail("unexpected markup declaration inside an element");
        } else {
          if (!stack.empty() || doc_->n_ == 0) {
            const std::uint32_t idx = read_start_tag();
            if (!last_tag_empty_) {
              stack.push_back(idx);
              if (stack.size() > max_depth_)
                fail("elements nested deeper than " + std::to_string(max_depth_) + " levels");
            } else {
              doc_->rec(idx).next = idx + 1;
              if (stack.empty()) root_done = true;
            }
          } else {
            fail("more than one root element");
          }
        }
      } else {
        if (stack.empty()) fail("unexpected text outside the root element");
        read_text();
      }
    }
    skip_misc(false);
    if (pos_ < s_.size()) fail("unexpected content after the root element");
    return std::move(doc_);
  }

  /// 1-based line number of byte offset `at` (monotonic cache; falls back to a rescan).
  std::size_t line_at(std::size_t at) const {
    if (at > s_.size()) at = s_.size();
    if (at < line_pos_) {
      line_pos_ = 0;
      line_no_ = 1;
    }
    line_no_ += static_cast<std::size_t>(std::count(s_.data() + line_pos_, s_.data() + at, '\n'));
    line_pos_ = at;
    return line_no_;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { fail_at(pos_, what); }

  [[noreturn]] void fail_at(std::size_t at, const std::string& what) const {
    throw ModelFormatError(src_ + ": XML error at line " + std::to_string(line_at(at)) + ": " + what);
  }

  std::string_view name_of(std::uint32_t idx) const {
    const std::size_t b = doc_->rec(idx).begin + 1;
    return s_.substr(b, skip_name(s_, b) - b);
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

  std::string_view read_name(const char* what) {
    if (pos_ >= s_.size()) fail(std::string("unexpected end of document in ") + what + " (truncated file?)");
    if (!is_name_start(s_[pos_])) fail(std::string("invalid name in ") + what);
    const std::size_t begin = pos_;
    while (pos_ < s_.size() && is_name_char(s_[pos_])) ++pos_;
    return s_.substr(begin, pos_ - begin);
  }

  /// Checks the character reference or entity at pos_ ('&') and moves past it.
  void read_reference() {
    const std::size_t start = pos_;
    const char* error = nullptr;
    std::string detail;
    const std::size_t next = decode_reference(s_, pos_, nullptr, error, detail);
    if (next == std::string_view::npos) fail_at(start, error + detail);
    pos_ = next;
  }

  /// character data up to the next '<'
  void read_text() {
    while (pos_ < s_.size() && s_[pos_] != '<') {
      const char c = s_[pos_];
      if (c == '&') {
        read_reference();
      } else if (c == '\0') {
        fail("NUL character in document");
      } else {
        while (pos_ < s_.size() && s_[pos_] != '<' && s_[pos_] != '&' && s_[pos_] != '\0') ++pos_;
      }
    }
  }

  std::uint32_t read_start_tag() {
    const std::size_t tag_pos = pos_;
    ++pos_;  // '<'
    if (doc_->n_ >= max_elements_) fail("more than " + std::to_string(max_elements_) + " elements");
    const std::string_view name = read_name("start tag");
    const std::string where = "start tag <" + std::string(name) + ">";
    attr_names_.clear();
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
      const std::string_view a = read_name(where.c_str());
      const std::string an(a);
      skip_spaces();
      expect('=', "attribute " + an + " of " + where);
      skip_spaces();
      if (pos_ >= s_.size()) fail("unexpected end of document in " + where + " (truncated file?)");
      const char quote = s_[pos_];
      if (quote != '"' && quote != '\'') fail("attribute value of " + an + " in " + where + " is not quoted");
      ++pos_;
      for (;;) {
        if (pos_ >= s_.size()) fail("unterminated value of attribute " + an + " in " + where + " (truncated file?)");
        const char v = s_[pos_];
        if (v == quote) {
          ++pos_;
          break;
        }
        if (v == '<') fail("'<' in the value of attribute " + an + " in " + where);
        if (v == '\0') fail("NUL character in document");
        if (v == '&') read_reference();
        else ++pos_;
      }
      for (const std::string_view other : attr_names_)
        if (other == a) fail("duplicate attribute " + an + " in " + where);
      attr_names_.push_back(a);
    }
    const auto idx = static_cast<std::uint32_t>(doc_->n_);
    constexpr std::uint32_t kChunk = 1u << XmlDocument::kChunkBits;
    if (idx % kChunk == 0) doc_->chunks_.emplace_back(new XmlDocument::Record[kChunk]);
    doc_->rec(idx) = {static_cast<std::uint32_t>(tag_pos), 0};
    if (idx % XmlDocument::kLineStep == 0) doc_->lines_.push_back(static_cast<std::uint32_t>(line_at(tag_pos)));
    ++doc_->n_;
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
  std::vector<std::string_view> attr_names_;
  std::unique_ptr<XmlDocument> doc_;
};

std::unique_ptr<XmlDocument> parse_xml(std::string_view text, const std::string& source_name, std::size_t max_depth,
                                       std::size_t max_elements) {
  XmlParser p(text, source_name, max_depth == 0 ? 1 : max_depth, max_elements == 0 ? 1 : max_elements);
  return p.run();
}

// ---------------------------------------------------------------- reading elements
XmlElement XmlDocument::at(std::size_t index) const {
  if (index >= n_) throw std::out_of_range("XmlDocument::at");
  return XmlElement(this, static_cast<std::uint32_t>(index));
}

std::optional<XmlElement> XmlDocument::child(const XmlElement& parent, std::string_view name) const {
  const XmlElement::Children c = parent.children(name);
  if (c.empty()) return std::nullopt;
  return *c.begin();
}

std::string_view XmlElement::name() const {
  const std::string_view s = doc_->s_;
  const std::size_t b = doc_->rec(idx_).begin + 1;
  return s.substr(b, skip_name(s, b) - b);
}

std::optional<std::string> XmlElement::attr(std::string_view attr_name) const {
  const std::string_view s = doc_->s_;
  std::size_t p = skip_name(s, doc_->rec(idx_).begin + 1);
  while (true) {
    while (is_space(s[p])) ++p;
    if (s[p] == '>' || s[p] == '/') return std::nullopt;
    // (validated: an attribute name is followed by '=' and a quoted value)
    const bool match = s.compare(p, attr_name.size(), attr_name) == 0 && !is_name_char(s[p + attr_name.size()]);
    while (s[p] != '"' && s[p] != '\'') ++p;  // name, spaces, '=', spaces: no quote
    const std::size_t value_end = s.find(s[p], p + 1);
    if (match) {
      std::string out;
      decode_into(out, s, p + 1, value_end);
      return out;
    }
    p = value_end + 1;
  }
}

std::string XmlElement::text() const {
  const std::string_view s = doc_->s_;
  const TagEnd tag = scan_start_tag(s, doc_->rec(idx_).begin);
  std::string out;
  if (tag.empty) return out;
  std::size_t p = tag.after;
  while (true) {
    const std::size_t lt = s.find('<', p);
    decode_into(out, s, p, lt);
    if (s.compare(lt, 2, "</") == 0) return out;
    if (s.compare(lt, 9, "<![CDATA[") == 0) {
      const std::size_t end = s.find("]]>", lt + 9);
      out.append(s.data() + lt + 9, end - lt - 9);
      p = end + 3;
    } else if (s.compare(lt, 2, "<!") == 0 || s.compare(lt, 2, "<?") == 0) {
      p = skip_markup(s, lt);
    } else {
      p = skip_element(s, lt);
    }
  }
}

std::size_t XmlElement::line() const {
  const std::uint32_t k = idx_ / XmlDocument::kLineStep;
  const char* from = doc_->s_.data() + doc_->rec(k * XmlDocument::kLineStep).begin;
  const char* to = doc_->s_.data() + doc_->rec(idx_).begin;
  std::size_t line = doc_->lines_[k];
  while (from < to) {
    const void* nl = std::memchr(from, '\n', static_cast<std::size_t>(to - from));
    if (nl == nullptr) break;
    ++line;
    from = static_cast<const char*>(nl) + 1;
  }
  return line;
}

XmlElement::Children XmlElement::children(std::string_view name) const {
  Children c;
  c.doc_ = doc_;
  c.first_ = idx_ + 1;
  c.end_ = doc_->rec(idx_).next;
  c.name_ = name;
  return c;
}

XmlElement::ChildIterator XmlElement::Children::begin() const { return ChildIterator(doc_, first_, end_, name_); }
XmlElement::ChildIterator XmlElement::Children::end() const { return ChildIterator(doc_, end_, end_, name_); }

bool XmlElement::Children::empty() const { return begin() == end(); }

std::size_t XmlElement::Children::size() const {
  std::size_t n = 0;
  for (auto it = begin(), e = end(); it != e; ++it) ++n;
  return n;
}

XmlElement::ChildIterator::ChildIterator(const XmlDocument* doc, std::uint32_t at, std::uint32_t end,
                                         std::string_view name)
    : doc_(doc), at_(at), end_(end), name_(name) {
  settle();
}

void XmlElement::ChildIterator::settle() {
  if (name_.empty()) return;
  while (at_ < end_ && XmlElement(doc_, at_).name() != name_) at_ = doc_->rec(at_).next;
}

XmlElement::ChildIterator& XmlElement::ChildIterator::operator++() {
  at_ = doc_->rec(at_).next;
  settle();
  return *this;
}

}  // namespace hepinfer::detail
