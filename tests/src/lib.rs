//! Shared harness for rkube black-box tests and benchmarks.
