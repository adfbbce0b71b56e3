# The one container image (infra/docker/Dockerfile.lambda) that all three functions run.
resource "aws_ecr_repository" "app" {
  name                 = var.name
  image_tag_mutability = "IMMUTABLE" # a tag is a release: redeploying a tag always runs the same bits
  force_delete         = var.ecr_force_delete

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS" # the AWS-managed aws/ecr key: no key to pay for or administer
  }
}

resource "aws_ecr_lifecycle_policy" "app" {
  repository = aws_ecr_repository.app.name

  # Keep enough releases to roll back; a function's image must stay in the repository while it is
  # deployed, so do not cut this to a handful.
  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Drop untagged images (interrupted pushes) after 7 days"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = 7
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "Keep the 30 newest tagged images"
        selection = {
          tagStatus   = "any"
          countType   = "imageCountMoreThan"
          countNumber = 30
        }
        action = { type = "expire" }
      },
    ]
  })
}
