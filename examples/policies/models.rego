# Only approved models may be called.
#
# Evaluated before a model call is forwarded (enforcement point
# inference.request). A model is approved when its name is one of
# approved_models or starts with one of them, so that dated versions such as
# "gpt-4o-2024-08-06" or "claude-sonnet-4-5-20250929" are approved too.
#
# This file also holds the package's decision: every file of the package
# infertrail.inference.request adds its reasons to deny_reasons (see
# secrets.rego), and any reason denies the request.
package infertrail.inference.request

approved_models := {"gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "claude-opus-4-1"}

default decision := {"result": "allow"}

decision := {"result": "deny", "reasons": sort(deny_reasons)} if count(deny_reasons) > 0

# model is the requested model, "" when the request names none.
model := object.get(input, ["inference", "model"], "")

approved(name) if strings.any_prefix_match(name, approved_models)

deny_reasons contains sprintf("model %q is not on the approved list", [model]) if {
	model != ""
	not approved(model)
}

deny_reasons contains "the request names no model" if model == ""
