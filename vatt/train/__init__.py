"""The one train loop and its parts (mesh, optimizer, state, metrics)."""
