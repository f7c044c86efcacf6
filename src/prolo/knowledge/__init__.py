"""The knowledge base: conditions with their evidence, protocols and codes.

Clinical content is data with sources (docs/knowledge-format.md,
docs/clinical-content.md); this package validates and serves it.
"""

from prolo.knowledge.loader import (
    KnowledgeError,
    conditions_for_complaint,
    conditions_for_icd10,
    get_condition,
    load_conditions,
)
from prolo.knowledge.schema import Condition, Study

__all__ = [
    "Condition",
    "KnowledgeError",
    "Study",
    "conditions_for_complaint",
    "conditions_for_icd10",
    "get_condition",
    "load_conditions",
]
