"""SQL for the control plane, one module per kind of row. Handlers never write SQL."""
