"""HL7 FHIR R4: mapping prolo's rows to and from resources, REST, bulk data, import.

The FHIR layer translates; it holds no clinical rules of its own. Each resource type
has one mapping module in :mod:`prolo.fhir.resources`; reads build plain dicts from
the domain rows (no second copy of the data), writes go through the domains'
services where they exist. See docs/fhir.md.
"""
