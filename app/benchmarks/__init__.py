"""Benchmarks that print numbers (`diemcau bench ...`); performance targets are checked here, not in tests."""
