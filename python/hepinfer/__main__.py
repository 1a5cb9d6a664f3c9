from hepinfer.cli import entry

entry()
