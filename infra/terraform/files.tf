# The OpenAI dialect's files (/openai/v1/files, FILES_BUCKET): batch input files, the output and
# error files made from finished batches, and each OpenAI batch's small record. Only the API
# function reads or writes them. Objects expire after files_retention_days (keep it at
# job_retention_days or more: a batch record outliving its jobs only answers 404 sooner).
resource "aws_s3_bucket" "files" {
  #checkov:skip=CKV_AWS_18:Every request is already in the API's own logs with its tenant and request id; S3 server access logs would need a second bucket and duplicate them.
  #checkov:skip=CKV_AWS_144:Files are batch inputs and outputs kept for days, re-creatable by their owner (outputs by reading them again); cross-region replication would double storage for no recovery need.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to new objects: the API writes and reads them itself, so event notifications have no consumer.
  #checkov:skip=CKV_AWS_21:Objects are replaced only with the same content (a batch's output rendered again) and expire by lifecycle; versions would keep every deleted upload past its owner's delete.
  bucket        = "${var.name}-files-${data.aws_caller_identity.current.account_id}"
  force_destroy = false
}

resource "aws_s3_bucket_public_access_block" "files" {
  bucket                  = aws_s3_bucket.files.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "files" {
  bucket = aws_s3_bucket.files.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# SSE-KMS with the AWS-managed aws/s3 key; the bucket key makes KMS calls per bucket, not per object.
resource "aws_s3_bucket_server_side_encryption_configuration" "files" {
  #checkov:skip=CKV2_AWS_67:The AWS-managed aws/s3 key rotates yearly on its own; a customer-managed key adds $1/month and a key policy without narrowing who reads (the API role's grant on this bucket).
  bucket = aws_s3_bucket.files.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "aws:kms"
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "files" {
  bucket = aws_s3_bucket.files.id
  rule {
    id     = "expire-files"
    status = "Enabled"
    filter {}
    expiration {
      days = var.files_retention_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "files_tls_only" {
  statement {
    sid       = "DenyPlainHttp"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.files.arn, "${aws_s3_bucket.files.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "files" {
  bucket     = aws_s3_bucket.files.id
  policy     = data.aws_iam_policy_document.files_tls_only.json
  depends_on = [aws_s3_bucket_public_access_block.files]
}
