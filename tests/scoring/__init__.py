"""Data: hepinfer.io (reading ROOT files) and hepinfer.score (models over files, local and Dask, output safety, load)."""
