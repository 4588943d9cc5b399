# Only approved models may be called.
#
# Evaluated before a model call is forwarded (enforcement point
# inference.request), as examples/policies/models.rego. This file also holds
# the package's decision: secrets.rego and injection.rego add their reasons
# to deny_reasons, and any reason denies the request.
package infertrail.inference.request

approved_models := {"gpt-4o", "gpt-4o-mini"}

default decision := {"result": "allow"}

decision := {"result": "deny", "reasons": sort(deny_reasons)} if count(deny_reasons) > 0

model := object.get(input, ["inference", "model"], "")

approved(name) if {
	some prefix in approved_models
	startswith(name, prefix)
}

deny_reasons contains sprintf("model %q is not on the approved list", [model]) if {
	model != ""
	not approved(model)
}

deny_reasons contains "the request names no model" if model == ""

# The request fields that hold the prompt, and every string of a value,
# one per line: secrets.rego and injection.rego read prompts with them.
prompt_fields := ["system", "instructions", "messages", "input"]

text_of(x) := concat("\n", [s | walk(x, [_, s]); is_string(s)])

prompt_json := json.marshal([object.get(input.inference, field, null) | some field in prompt_fields])
