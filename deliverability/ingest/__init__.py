"""Input sources for the nightly job: one module per format."""
