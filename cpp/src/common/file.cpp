// Reading a model file whole (see file.hpp).
#include "common/file.hpp"

#include <fstream>
#include <sstream>
#include <string>

#include "hepinfer/errors.hpp"

namespace hepinfer {

std::string read_file(const std::string& path, const std::string& cannot_open) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ModelFormatError(cannot_open);
  // into a string of the file's size: a copy through a stringstream held the content twice at peak
  in.seekg(0, std::ios::end);
  const std::streamoff end = in.tellg();
  in.seekg(0, std::ios::beg);
  if (end > 0 && in) {
    std::string out(static_cast<std::size_t>(end), '\0');
    in.read(&out[0], static_cast<std::streamsize>(end));
    if (in.bad()) throw ModelFormatError(path + ": error while reading the model file");
    out.resize(static_cast<std::size_t>(in.gcount()));              // the file shrank meanwhile
    if (!in.eof() && in.peek() != std::char_traits<char>::eof()) {  // or grew
      std::ostringstream rest;
      rest << in.rdbuf();
      out += rest.str();
    }
    if (in.bad()) throw ModelFormatError(path + ": error while reading the model file");
    return out;
  }
  in.clear();  // not seekable (a pipe) or empty: read it as a stream
  in.seekg(0, std::ios::beg);
  in.clear();
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw ModelFormatError(path + ": error while reading the model file");
  return ss.str();
}

}  // namespace hepinfer
