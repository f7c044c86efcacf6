"""Load the condition files in ``data/conditions`` once, failing loudly.

A malformed file raises :class:`KnowledgeError` naming the file and the field path
(``studies[2].pmid``), so a bad edit stops the app at start-up instead of showing a
patient half a page.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from types import MappingProxyType

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from prolo.knowledge.schema import COMPLAINT_KEYS, Condition, parse_condition

CONDITIONS_DIR = Path(__file__).parent / "data" / "conditions"


class KnowledgeError(ValueError):
    """A knowledge file is malformed; the message names the file and the field."""

    def __init__(self, file: str, field: str, message: str) -> None:
        where = f"{file}: {field}" if field else file
        super().__init__(f"{where}: {message}")
        self.file = file
        self.field = field
        self.message = message


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _message(problem: ErrorDetails) -> str:
    # Our own validators raise ValueError; pydantic prefixes those with "Value error, ".
    return problem["msg"].removeprefix("Value error, ")


def _from_validation_error(file: str, error: ValidationError) -> KnowledgeError:
    problems = error.errors(include_url=False)
    first = problems[0]
    field = _field_path(tuple(first["loc"]))
    message = _message(first)
    if len(problems) > 1:
        rest = "; ".join(
            f"{_field_path(tuple(p['loc'])) or '(file)'}: {_message(p)}" for p in problems[1:]
        )
        message = f"{message} (also: {rest})"
    return KnowledgeError(file, field, message)


def load_file(path: Path) -> Condition:
    """Parse and validate one condition file; KnowledgeError when it is malformed."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise KnowledgeError(path.name, "", f"not UTF-8 text: {exc}") from exc
    except yaml.YAMLError as exc:
        raise KnowledgeError(path.name, "", f"not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise KnowledgeError(path.name, "", "must be a YAML mapping")
    try:
        return parse_condition(data, file_stem=path.stem)
    except ValidationError as exc:
        raise _from_validation_error(path.name, exc) from exc


def load_directory(directory: Path) -> dict[str, Condition]:
    """Every ``*.yaml`` in ``directory`` keyed by id, in id order, with parents checked.

    Not cached: use :func:`load_conditions` for the shipped files.
    """
    found = {cond.id: cond for cond in map(load_file, sorted(directory.glob("*.yaml")))}
    for cond in found.values():
        _check_parent_chain(cond, found)
    return dict(sorted(found.items()))


def _check_parent_chain(cond: Condition, found: Mapping[str, Condition]) -> None:
    seen = [cond.id]
    current = cond
    while current.parent is not None:
        if current.parent not in found:
            raise KnowledgeError(
                f"{current.id}.yaml", "parent", f"unknown condition {current.parent!r}"
            )
        if current.parent in seen:
            chain = " -> ".join([*seen, current.parent])
            raise KnowledgeError(f"{cond.id}.yaml", "parent", f"parents form a cycle: {chain}")
        seen.append(current.parent)
        current = found[current.parent]


@cache
def _shipped() -> Mapping[str, Condition]:
    return MappingProxyType(load_directory(CONDITIONS_DIR))


def load_conditions() -> dict[str, Condition]:
    """All shipped conditions keyed by id (loaded once; a fresh dict each call)."""
    return dict(_shipped())


def get_condition(condition_id: str) -> Condition:
    """The condition with this id; KeyError naming it when unknown."""
    try:
        return _shipped()[condition_id]
    except KeyError:
        raise KeyError(f"unknown condition {condition_id!r}") from None


def _normalise_icd10(code: str) -> str:
    return code.strip().upper().replace(".", "")


def _depth(cond: Condition, found: Mapping[str, Condition]) -> int:
    depth = 0
    while cond.parent is not None:
        depth += 1
        cond = found[cond.parent]
    return depth


def conditions_for_icd10(code: str) -> list[Condition]:
    """Conditions whose codes or ``match.icd10_prefixes`` cover ``code``.

    The dot is optional (``M17.11`` or ``M1711``). Most specific first: an exact
    listed code, then the longest matching prefix, then the deeper entry (a child
    before its parent); ties in id order. Empty when none match.
    """
    wanted = _normalise_icd10(code)
    found = _shipped()
    ranked: list[tuple[int, int, str, Condition]] = []
    for cond in found.values():
        if any(_normalise_icd10(c.code) == wanted for c in cond.codes.icd10cm):
            specificity = 100
        else:
            prefixes = map(_normalise_icd10, cond.match.icd10_prefixes)
            specificity = max((len(p) for p in prefixes if wanted.startswith(p)), default=0)
        if specificity:
            ranked.append((-specificity, -_depth(cond, found), cond.id, cond))
    return [cond for *_, cond in sorted(ranked, key=lambda r: r[:3])]


def conditions_for_complaint(key: str) -> list[Condition]:
    """Conditions the self-check offers for a complaint key, in id order.

    Raises ValueError naming ``key`` when it is not one of the complaint keys.
    """
    if key not in COMPLAINT_KEYS:
        raise ValueError(f"unknown complaint key {key!r}")
    return [cond for cond in _shipped().values() if key in cond.match.complaint_keys]
