"""Treatment courses, consent and procedure records."""
