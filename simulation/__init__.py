"""A discrete-event simulation of scale-to-zero serving: a fixed idle window against a learned one (issue 16)."""
