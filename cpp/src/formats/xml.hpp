#pragma once
/// \file xml.hpp
/// A small XML parser for model files (TMVA weight files). It supports
/// elements, attributes, character data, comments, processing instructions,
/// the <?xml?> declaration, a DOCTYPE without internal subset, CDATA sections
/// and the predefined and numeric character references. The parser is
/// iterative (no recursion), limits the nesting depth, and never reads past
/// the input: malformed or truncated input throws hepinfer::ModelFormatError
/// naming the source and the line.
///
/// The document is validated in one pass that records, per element, only where
/// its start tag is and which element follows its subtree (8 bytes, plus a line
/// number every 8 elements); names, attributes and text are read from the input
/// when asked for. A file of empty elements (`<a/>`, 4 bytes) so costs about twice
/// its size instead of ~40 times. The input must outlive the XmlDocument, and the
/// document its XmlElement handles. Inputs of 4 GiB or more are refused.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hepinfer::detail {

class XmlDocument;

/// A handle to one element of an XmlDocument.
class XmlElement {
 public:
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  std::string_view name() const;
  /// The value of an attribute, entity references decoded, or nullopt when absent.
  std::optional<std::string> attr(std::string_view attr_name) const;
  bool has_attr(std::string_view attr_name) const { return attr(attr_name).has_value(); }
  /// All character data directly inside (CDATA included), decoded.
  std::string text() const;
  /// 1-based line of the start tag.
  std::size_t line() const;
  /// Index in document order (elements[0] is the root).
  std::size_t index() const { return idx_; }

  class ChildIterator;
  /// The child elements, in document order; those named `name` only when it is not empty.
  class Children {
   public:
    ChildIterator begin() const;
    ChildIterator end() const;
    bool empty() const;
    std::size_t size() const;

   private:
    friend class XmlElement;
    const XmlDocument* doc_;
    std::uint32_t first_, end_;
    std::string_view name_;
  };
  Children children(std::string_view name = {}) const;

 private:
  friend class XmlDocument;
  XmlElement(const XmlDocument* doc, std::uint32_t idx) : doc_(doc), idx_(idx) {}
  const XmlDocument* doc_;
  std::uint32_t idx_;
};

class XmlElement::ChildIterator {
 public:
  XmlElement operator*() const { return XmlElement(doc_, at_); }
  ChildIterator& operator++();
  bool operator==(const ChildIterator& o) const { return at_ == o.at_; }
  bool operator!=(const ChildIterator& o) const { return at_ != o.at_; }

 private:
  friend class XmlElement::Children;
  ChildIterator(const XmlDocument* doc, std::uint32_t at, std::uint32_t end, std::string_view name);
  void settle();  ///< moves to the first element from at_ on with the wanted name
  const XmlDocument* doc_;
  std::uint32_t at_, end_;
  std::string_view name_;
};

class XmlDocument {
 public:
  XmlDocument(const XmlDocument&) = delete;
  XmlDocument& operator=(const XmlDocument&) = delete;
  XmlDocument(XmlDocument&&) = delete;

  XmlElement root() const { return XmlElement(this, 0); }
  XmlElement at(std::size_t index) const;
  std::size_t size() const { return n_; }
  /// The first child element of `parent` named `name`, or nullopt.
  std::optional<XmlElement> child(const XmlElement& parent, std::string_view name) const;
  /// All child elements of `parent` named `name`, in document order.
  XmlElement::Children children(const XmlElement& parent, std::string_view name) const { return parent.children(name); }

 private:
  friend class XmlElement;
  friend class XmlElement::Children;
  friend class XmlElement::ChildIterator;
  friend class XmlParser;
  friend std::unique_ptr<XmlDocument> parse_xml(std::string_view, const std::string&, std::size_t, std::size_t);
  XmlDocument(std::string_view text, std::string source) : s_(text), src_(std::move(source)) {}

  struct Record {
    std::uint32_t begin;  ///< offset of the start tag's '<'
    std::uint32_t next;   ///< index of the first element after this one's subtree
  };
  static constexpr unsigned kChunkBits = 16;
  static constexpr unsigned kLineStep = 8;  ///< a line number is kept for every kLineStep-th element

  Record& rec(std::uint32_t i) { return chunks_[i >> kChunkBits][i & ((1u << kChunkBits) - 1)]; }
  const Record& rec(std::uint32_t i) const { return chunks_[i >> kChunkBits][i & ((1u << kChunkBits) - 1)]; }

  std::string_view s_;
  std::string src_;
  std::vector<std::unique_ptr<Record[]>> chunks_;  ///< fixed-size chunks: no reallocation copies
  std::size_t n_ = 0;
  std::vector<std::uint32_t> lines_;  ///< line of element k * kLineStep
};

/// Parses `text` (which must outlive the document). Throws
/// ModelFormatError("<source_name>: XML error at line N: ...") on any syntax error,
/// on nesting deeper than `max_depth`, or on more than `max_elements` elements.
std::unique_ptr<XmlDocument> parse_xml(std::string_view text, const std::string& source_name,
                                       std::size_t max_depth = 10000, std::size_t max_elements = std::size_t{1} << 27);

}  // namespace hepinfer::detail
