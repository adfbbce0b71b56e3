terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.80+: the `valkey` engine on aws_elasticache_replication_group.
      version = "~> 5.80"
    }
  }

  # State holds no secret values (the Secrets Manager value is set outside Terraform), but keep it
  # remote and locked for a shared deployment, e.g. in backend.tf:
  #   terraform { backend "s3" { bucket = "…" key = "chatjobs/terraform.tfstate" region = "us-east-1" use_lockfile = true } }
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge({ Project = "chatjobs", ManagedBy = "terraform" }, var.tags)
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
