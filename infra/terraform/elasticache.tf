# Optional (enable_elasticache = true): a Valkey/Redis node for the result cache and rate limits
# instead of DynamoDB items. It lives in a VPC, so the functions join the VPC too and then reach
# the LLM APIs, webhooks and AWS APIs only through a NAT gateway (about $33/month per AZ plus
# $0.045/GB) or VPC endpoints. See docs/DEPLOYMENT.md for the cost; it is not the default.

resource "aws_security_group" "lambda" {
  count = var.enable_elasticache ? 1 : 0

  name        = "${var.name}-lambda"
  description = "chatjobs functions (only with enable_elasticache)"
  vpc_id      = var.vpc_id

  egress {
    #checkov:skip=CKV_AWS_382:The functions call the LLM APIs and customers' webhooks (any host and TCP port; private targets are refused by the application) plus AWS APIs, all through the NAT gateway.
    description = "LLM APIs, customer webhooks on any port, AWS APIs (via NAT)"
    protocol    = "tcp"
    from_port   = 0
    to_port     = 65535
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_security_group" "cache" {
  count = var.enable_elasticache ? 1 : 0

  name        = "${var.name}-cache"
  description = "chatjobs ElastiCache: reachable from the functions only"
  vpc_id      = var.vpc_id

  ingress {
    description     = "Valkey/Redis from the chatjobs functions"
    protocol        = "tcp"
    from_port       = 6379
    to_port         = 6379
    security_groups = [aws_security_group.lambda[0].id]
  }
}

resource "aws_elasticache_subnet_group" "cache" {
  count = var.enable_elasticache ? 1 : 0

  name       = "${var.name}-cache"
  subnet_ids = var.private_subnet_ids
}

resource "aws_elasticache_replication_group" "cache" {
  #checkov:skip=CKV_AWS_31:No AUTH token: it would have to sit in REDIS_URL, a plain environment variable (the secret's keys are fixed by names.SECRET_KEYS). Access is limited by the security group to the functions' group, inside private subnets, with TLS in transit.
  #checkov:skip=CKV_AWS_191:Encrypted at rest with the ElastiCache default key; the node holds only disposable cache entries and rate-limit windows, and a customer-managed key adds cost and a key policy.
  #checkov:skip=CKV2_AWS_50:One node, no failover: losing it costs cache misses and reset rate-limit windows, never jobs (they live in DynamoDB). A replica doubles the node cost.
  count = var.enable_elasticache ? 1 : 0

  replication_group_id       = "${var.name}-cache"
  description                = "chatjobs result cache and rate limits"
  engine                     = var.elasticache_engine
  engine_version             = var.elasticache_engine_version
  node_type                  = var.elasticache_node_type
  num_cache_clusters         = 1
  port                       = 6379
  subnet_group_name          = aws_elasticache_subnet_group.cache[0].name
  security_group_ids         = [aws_security_group.cache[0].id]
  snapshot_retention_limit   = 0 # a cache refills itself; jobs and results are in DynamoDB (with PITR)
  at_rest_encryption_enabled = true
  transit_encryption_enabled = true
  automatic_failover_enabled = false
  auto_minor_version_upgrade = true
  apply_immediately          = false

  lifecycle {
    precondition {
      condition     = var.vpc_id != null && length(var.private_subnet_ids) > 0
      error_message = "enable_elasticache needs vpc_id and private_subnet_ids (subnets with a NAT route)."
    }
  }
}
