#pragma once
/// \file errors.hpp
/// Exceptions thrown by the hepinfer core. The Python bindings map them to
/// Python exceptions: ModelFormatError -> hepinfer.ModelFormatError (a ValueError),
/// InputError -> hepinfer.InputError (a ValueError), DeviceError -> RuntimeError.

#include <stdexcept>
#include <string>

namespace hepinfer {

/// Base class of every hepinfer exception.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A model file (or in-memory model text) is malformed, truncated, or uses a
/// feature hepinfer does not implement. The message names the file and the place.
class ModelFormatError : public Error {
 public:
  using Error::Error;
};

/// The input given to a model is wrong: feature count, names, shapes, dtypes.
class InputError : public Error {
 public:
  using Error::Error;
};

/// A device (GPU) was requested that this build or machine cannot provide.
class DeviceError : public Error {
 public:
  using Error::Error;
};

}  // namespace hepinfer
