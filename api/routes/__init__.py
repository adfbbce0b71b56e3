"""HTTP routes, one module per resource: jobs, batches, webhooks, health."""
