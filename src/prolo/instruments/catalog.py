"""The instrument catalog: every module in ``prolo.instruments.library`` that
defines ``INSTRUMENT`` is registered under its id.

Discovery keeps the catalog free of a hand-kept list that every new instrument
would have to edit.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from prolo.instruments import library
from prolo.instruments.base import Instrument


@cache
def instruments() -> dict[str, Instrument]:
    """All instruments keyed by id, in id order."""
    found: dict[str, Instrument] = {}
    for info in pkgutil.iter_modules(library.__path__):
        module = importlib.import_module(f"{library.__name__}.{info.name}")
        instrument = getattr(module, "INSTRUMENT", None)
        if instrument is None:
            continue
        if not isinstance(instrument, Instrument):
            raise TypeError(f"{module.__name__}.INSTRUMENT is not an Instrument")
        if instrument.id in found:
            raise ValueError(f"duplicate instrument id {instrument.id!r} in {module.__name__}")
        found[instrument.id] = instrument
    return dict(sorted(found.items()))


def get_instrument(instrument_id: str) -> Instrument:
    """The instrument with this id; KeyError naming it when unknown."""
    try:
        return instruments()[instrument_id]
    except KeyError:
        raise KeyError(f"unknown instrument {instrument_id!r}") from None
