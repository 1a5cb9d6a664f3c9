// The small helpers declared in graph.hpp: Shape and printable().
#include <string>

#include "nn/graph.hpp"

namespace hepinfer::nn {

void Shape::push(std::int64_t v) {
  if (rank >= kMaxRank) throw OpError("tensor rank above " + std::to_string(kMaxRank) + " is not supported");
  d[rank++] = v;
}

std::string printable(const std::string& s) {
  static const char* hex = "0123456789abcdef";
  std::string r;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f) {
      r += static_cast<char>(c);
    } else {
      r += "\\x";
      r += hex[c >> 4];
      r += hex[c & 15];
    }
  }
  return r;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < rank; ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

}  // namespace hepinfer::nn
