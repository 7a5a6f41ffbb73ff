"""What every kind of test shares: waiting with a deadline, skip-or-fail, starting MIS and
running `mis`, the repository's root, a throwaway TLS certificate. Nothing here imports from
a test folder's own helpers (tests/e2e, tests/k8s, ...): those build on this."""
