"""CLI commands, one module per concern; `deliverability.cli` registers them."""
