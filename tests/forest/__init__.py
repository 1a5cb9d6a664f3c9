"""Inference, forests: the XGBoost, LightGBM and TMVA readers and the forest engine against each library's own predictions."""
