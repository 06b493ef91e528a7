# One IAM role per platform component for its ServiceAccount (IRSA), whose
# inline policy is deploy/iam/<component>.json rendered with the ARNs of
# this region. The templates are checked for least privilege at plan time.

data "aws_partition" "current" {}

locals {
  components = toset(["auth", "documents", "audit", "gateway", "mailer"])
  policy_dir = coalesce(var.iam_policy_dir, "${path.module}/../../../../deploy/iam")

  # The templates rendered with stand-ins, so that their shape (actions,
  # wildcards) is known at plan time even while ARNs are not.
  shape_vars = { for k in keys(var.template_vars) : k => "arn:${data.aws_partition.current.partition}:placeholder:::${k}" }
  shapes     = { for c in local.components : c => jsondecode(templatefile("${local.policy_dir}/${c}.json", local.shape_vars)) }

  # The only actions that may have Resource "*": they have no resource-level
  # permissions in IAM (deploy/iam/README.md says why each is needed).
  resource_wildcard_actions = ["sns:ListTopics"]

  policy_violations = {
    for c, p in local.shapes : c => concat(
      [for s in p.Statement : "${try(s.Sid, "?")}: an Allow action contains *" if s.Effect == "Allow" && anytrue([for a in flatten([s.Action]) : strcontains(a, "*")])],
      [for s in p.Statement : "${try(s.Sid, "?")}: Resource * for an action that has resource-level permissions" if s.Effect == "Allow" && contains(flatten([s.Resource]), "*") && length(setsubtract(flatten([s.Action]), local.resource_wildcard_actions)) > 0],
      [for s in p.Statement : "${try(s.Sid, "?")}: NotAction/NotResource/NotPrincipal are not allowed" if can(s.NotAction) || can(s.NotResource) || can(s.NotPrincipal)],
      [for s in p.Statement : "${try(s.Sid, "?")}: a resource ARN contains *" if s.Effect == "Allow" && anytrue([for r in flatten([s.Resource]) : strcontains(r, "*") && r != "*" && !endswith(r, "/*")])],
    )
  }
}

locals {
  # Only the component's own ServiceAccount, through the cluster's OIDC
  # provider, with the STS audience the EKS pod identity webhook sets.
  trust_policies = {
    for c in local.components : c => jsonencode({
      Version = "2012-10-17"
      Statement = [{
        Sid       = "ServiceAccountOnly"
        Effect    = "Allow"
        Principal = { Federated = var.oidc_provider_arn }
        Action    = "sts:AssumeRoleWithWebIdentity"
        Condition = {
          StringEquals = {
            "${var.oidc_issuer}:sub" = "system:serviceaccount:${var.kubernetes_namespace}:${c}"
            "${var.oidc_issuer}:aud" = "sts.amazonaws.com"
          }
        }
      }]
    })
  }
}

resource "aws_iam_role" "component" {
  for_each = local.components

  name                 = "${var.name}-${each.key}"
  description          = "IRSA role of the ${each.key} ServiceAccount in ${var.kubernetes_namespace}"
  assume_role_policy   = local.trust_policies[each.key]
  max_session_duration = 3600
  tags                 = merge(var.tags, { component = each.key })
}

resource "aws_iam_role_policy" "component" {
  for_each = local.components

  name   = "${var.name}-${each.key}"
  role   = aws_iam_role.component[each.key].id
  policy = jsonencode(jsondecode(templatefile("${local.policy_dir}/${each.key}.json", var.template_vars)))

  lifecycle {
    precondition {
      condition     = length(local.policy_violations[each.key]) == 0
      error_message = "deploy/iam/${each.key}.json is not least privilege: ${join("; ", local.policy_violations[each.key])}."
    }
  }
}
