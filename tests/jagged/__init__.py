"""Inference, jagged arrays: hepinfer.jagged against awkward and vector."""
