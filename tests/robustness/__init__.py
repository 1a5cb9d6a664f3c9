"""Properties every capability keeps: hostile model files (size limits, fuzzer regressions), thread starts that fail, the GIL released around long C++ calls."""
