"""hepinfer's tests, one folder per capability (see README, Layout). A package, so that helper
modules are imported by their full name (``from tests.scoring.samples import write_flat``) and test
files of the same name in two folders do not clash."""
