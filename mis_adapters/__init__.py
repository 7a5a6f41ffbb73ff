"""One module per real thing the core talks to: the payload volume, processes, Kubernetes."""
