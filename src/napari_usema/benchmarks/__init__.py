"""Benchmarks behind ``usema bench``: each prints one JSON line per figure."""
