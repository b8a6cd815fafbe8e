"""Small async query functions over the models, one module per table family.

Each function takes the caller's ``AsyncSession`` and never commits: the caller owns the
transaction, so several repository calls can share one.
"""
