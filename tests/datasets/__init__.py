"""Data: hepinfer.datasets (Pythia 8 + FastJet jet samples, the toy generator, jet substructure)."""
