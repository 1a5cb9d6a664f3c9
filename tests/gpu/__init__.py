"""GPU tests (marked gpu): skipped without CUDA; run on a GPU machine by benchmarks/gpu_check.sh."""
