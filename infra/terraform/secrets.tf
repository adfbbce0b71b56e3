# One JSON secret read by every function at cold start (AWS_SECRET_ID). Terraform creates the
# container only; the value is set outside (docs/DEPLOYMENT.md) so it never lands in the state:
#   aws secretsmanager put-secret-value --secret-id chatjobs/app --secret-string file://secret.json
# with the keys of names.SECRET_KEYS: API_KEYS, GEMINI_API_KEY, OPENROUTER_API_KEY,
# WEBHOOK_SIGNING_SECRET, ADMIN_API_KEYS, KEY_HASH_SECRET.
resource "aws_secretsmanager_secret" "app" {
  #checkov:skip=CKV2_AWS_57:The values are third-party LLM keys and tenant API keys; no rotation Lambda can mint them. Rotation is a put-secret-value plus a redeploy, documented in docs/DEPLOYMENT.md.
  #checkov:skip=CKV_AWS_149:Encrypted with the AWS-managed aws/secretsmanager key. A customer-managed key adds $1/month and a key policy to administer without narrowing who can read it: access is the per-function IAM grant on this one secret.
  name                    = var.secret_name
  description             = "chatjobs: JSON with API_KEYS, GEMINI_API_KEY, OPENROUTER_API_KEY, WEBHOOK_SIGNING_SECRET, ADMIN_API_KEYS, KEY_HASH_SECRET"
  recovery_window_in_days = var.secret_recovery_window_days
}
