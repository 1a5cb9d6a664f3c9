"""The app layer: the command line and the demo (with hepinfer.plot)."""
