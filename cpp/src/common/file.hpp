#pragma once
// Reading a model file whole, for every reader (forests and networks).
#include <string>

namespace hepinfer {

/// The content of the file at `path`, read into a string of the file's size (a pipe or other
/// unseekable file is read as a stream). Throws ModelFormatError(`cannot_open`) when the file
/// cannot be opened, and ModelFormatError naming `path` on a read error.
std::string read_file(const std::string& path, const std::string& cannot_open);

}  // namespace hepinfer
