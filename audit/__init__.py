"""The audit trail: hash-chained events with checkpoints signed by an audit key on the HSM."""
