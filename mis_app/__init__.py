"""The thin edge of MIS: HTTP routes, settings, logging and the command line."""
