"""Exact CPU equivalents of the few PyTorch3D names ActionBench imports (see ../README.md)."""
