#pragma once
/// \file xml.hpp
/// A small XML DOM parser for model files (TMVA weight files). It supports
/// elements, attributes, character data, comments, processing instructions,
/// the <?xml?> declaration, a DOCTYPE without internal subset, CDATA sections
/// and the predefined and numeric character references. The parser is
/// iterative (no recursion), limits the nesting depth, and never reads past
/// the input: malformed or truncated input throws hepinfer::ModelFormatError
/// naming the source and the line.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hepinfer::detail {

struct XmlAttribute {
  std::string name;
  std::string value;  ///< entity references decoded
};

struct XmlElement {
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  std::string name;
  std::vector<XmlAttribute> attributes;
  std::string text;                   ///< all character data directly inside (CDATA included), decoded
  std::vector<std::size_t> children;  ///< indices into XmlDocument::elements, in document order
  std::size_t parent = npos;          ///< index of the parent element (npos for the root)
  std::size_t line = 0;               ///< 1-based line of the start tag

  /// The value of an attribute, or nullptr when absent.
  const std::string* attr(std::string_view attr_name) const noexcept;
};

struct XmlDocument {
  std::vector<XmlElement> elements;  ///< elements[0] is the root element

  const XmlElement& root() const { return elements.front(); }
  const XmlElement& at(std::size_t index) const { return elements.at(index); }
  /// The first child element of `parent` named `name`, or nullptr.
  const XmlElement* child(const XmlElement& parent, std::string_view name) const noexcept;
  /// All child elements of `parent` named `name`, in document order.
  std::vector<const XmlElement*> children(const XmlElement& parent, std::string_view name) const;
};

/// Parses `text`. Throws ModelFormatError("<source_name>: XML error at line N: ...")
/// on any syntax error, on nesting deeper than `max_depth`, or on more than
/// `max_elements` elements.
XmlDocument parse_xml(std::string_view text, const std::string& source_name,
                      std::size_t max_depth = 10000,
                      std::size_t max_elements = std::size_t{1} << 27);

}  // namespace hepinfer::detail
