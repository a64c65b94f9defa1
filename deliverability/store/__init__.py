"""The SQL store: models, engine and session setup, queries."""
