"""The domain of MIS: one request's life, free of web, file-system and cluster libraries."""
