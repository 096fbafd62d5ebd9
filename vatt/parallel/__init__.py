"""Multi-process helpers (jax.distributed initialisation)."""
