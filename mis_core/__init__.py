"""The domain of the MONAI Inference Service: one request's life, free of web, files and clusters."""
