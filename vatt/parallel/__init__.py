"""The one sharding model (vatt.parallel.mesh: mesh, shardings, host shares <-> global arrays)
and multi-process initialisation (vatt.parallel.distributed)."""
