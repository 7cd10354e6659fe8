"""a2qflow: FINN dataflow accelerators with A2Q/A2Q+ accumulator guarantees."""
__version__ = "0.1.0"
