"""Training recipes and their data pipeline (not needed for inference)."""
