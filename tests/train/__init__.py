"""Training: hepinfer.train (all torch code, DisCo/MoDE losses included), hepinfer.export and the torch-free hepinfer.metrics."""
