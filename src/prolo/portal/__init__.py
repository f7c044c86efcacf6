"""The patient's side: questionnaire responses, scores and the flare diary."""
