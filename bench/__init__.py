"""`nox -s bench` and its parts: MIS against its baselines (see bench/run.py)."""

MIS_MODULES = "mis_adapters."  # a module compared under --module that is MIS's own
