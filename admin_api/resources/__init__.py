"""One module per resource; each holds a Registry of its routes (admin_api/registry.py)."""
