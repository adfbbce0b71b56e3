"""HTTP routes, one module per resource (`jobs`, `health`; `batches` and webhooks to come)."""
