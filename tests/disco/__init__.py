"""Inference, decorrelation: hepinfer.disco (distance correlation) against dcor and dense references."""
