"""Deployment: generated C++ (codegen), TMVA export, the RDataFrame helper, the C API and the CMake package (tests/cpp, tests/consumer)."""
