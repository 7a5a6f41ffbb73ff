"""Labels MIS puts on every job it starts (Kubernetes Jobs, containers), to find leftovers.

The instance label keeps two installations sharing a namespace or an engine from sweeping
each other's jobs.
"""

MANAGED_BY = "monai-inference-service"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_JOB_ID = "mis.monai.io/job-id"
LABEL_REQUEST_ID = "mis.monai.io/request-id"
