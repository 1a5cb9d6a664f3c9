"""Fixtures of the scoring tests (tests/scoring: hepinfer.io and hepinfer.score)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def rootdir(tmp_path_factory):
    """The folder of the NanoAOD-like files written by ROOT (or uproot), made once per session
    (tests/scoring/samples.py: root_written_files; their arrays: samples.reference)."""
    pytest.importorskip("uproot")
    pytest.importorskip("awkward")
    from tests.scoring.samples import root_written_files

    return root_written_files(tmp_path_factory.getbasetemp())
