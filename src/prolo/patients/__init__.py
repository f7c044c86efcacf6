"""Patients and their chart: demographics, diagnoses, allergies, medications."""
