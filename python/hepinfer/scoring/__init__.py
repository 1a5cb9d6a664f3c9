"""Score ROOT files with any hepinfer model: ``hepinfer.score(model, files, ...)``.

    scores = hepinfer.score("bdt.json", "ttbar_*.root", tree="Events")        # numpy, one per event
    summary = hepinfer.score(forest, files, tree="Events", output="scores.root", chunk="50 MB")

The files are read chunk by chunk (memory bounded by ``chunk``, not by the files), the next
pieces being read in a background thread while the model evaluates the current one (see
:func:`_read_plan`: a large chunk is read in pieces, so reading and evaluation overlap from the
first piece on).

Set and graph networks (PFN, EFN, ParticleNet) are read from jagged branches, one event
per jet, without padding::

    hepinfer.score("particlenet.onnx", files, tree="jets",
                   features={"points": ["part_deta", "part_dphi"],
                             "features": ["part_logpt", "part_loge", "part_deta", "part_dphi"]},
                   jet_features={"jet": ["jet_pt", "jet_eta"]})    # only if the network has per-jet inputs

The model protocol
------------------
``score`` takes any object that has

* its input names: an attribute ``input_names`` (or ``feature_names``, as
  :class:`hepinfer.Forest` has, or ``inputs``, as the neural-network ``hepinfer.Model`` has;
  a list of strings or of objects with a ``.name``), and
* ``predict(inputs)`` taking a dict ``{input name: 1-D numpy array}`` (one value per event)
  and returning a numpy array ``(n,)`` (one output), ``(n, k)`` (k outputs), or a dict
  ``{output name: (n,) array}``;
* optionally ``output_names`` (a list of k names for the output branches).

:class:`hepinfer.Forest` objects, model files (any format ``Forest.load`` reads) and in-memory
xgboost/lightgbm boosters are adapted to it automatically (``output_kind`` and ``n_threads``
are passed to :meth:`hepinfer.Forest.predict`).
"""

from hepinfer.scoring.local import score
from hepinfer.scoring.models import ScoringModel, as_scoring_model, split_features
from hepinfer.scoring.on_dask import ModelHolder, score_dask
from hepinfer.scoring.output import OutputError, ScoreSummary, Terminated
from hepinfer.scoring.plan import ScoreOptions

__all__ = [
    "ModelHolder",
    "OutputError",
    "ScoreOptions",
    "ScoreSummary",
    "ScoringModel",
    "Terminated",
    "as_scoring_model",
    "score",
    "score_dask",
    "split_features",
]
