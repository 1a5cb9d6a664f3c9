"""The older name of :mod:`hepinfer.train.decorrelation` (the DisCo and MoDE losses), kept so that
``from hepinfer.losses import DisCo, MoDE, disco_loss, mode_loss`` goes on working. All torch code
lives in :mod:`hepinfer.train`; this module itself imports nothing (``import hepinfer.losses``
does not import torch): each name is looked up in hepinfer.train.decorrelation on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from hepinfer.train.decorrelation import GPU_AUTO_MAX_EVENTS as GPU_AUTO_MAX_EVENTS
    from hepinfer.train.decorrelation import DisCo, MoDE, disco_loss, mode_loss

__all__ = ["DisCo", "MoDE", "disco_loss", "mode_loss"]
_NAMES = (*__all__, "GPU_AUTO_MAX_EVENTS")


def __getattr__(name: str) -> Any:  # PEP 562
    if name in _NAMES:
        from hepinfer.train import decorrelation

        return getattr(decorrelation, name)
    raise AttributeError(f"module 'hepinfer.losses' has no attribute {name!r}")
