"""Find each domain's modules by their role name, so that adding a domain never means
editing a shared list (tables in ``models.py``, API in ``*routes.py``, pages in
``*pages.py``, sub-commands in ``cli.py``)."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import prolo

# Alphabetical order is the mount order; API and page paths never overlap, so it is stable.


def domain_modules(suffix: str) -> list[ModuleType]:
    """Import ``prolo.<domain>.<module>`` for every module whose name ends with ``suffix``."""
    found: list[ModuleType] = []
    for domain in sorted(pkgutil.iter_modules(prolo.__path__), key=lambda m: m.name):
        if not domain.ispkg:
            continue
        package = importlib.import_module(f"prolo.{domain.name}")
        for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if not module.ispkg and module.name.endswith(suffix):
                found.append(importlib.import_module(f"prolo.{domain.name}.{module.name}"))
    return found
