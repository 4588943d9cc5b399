# Prompts must not carry secrets.
#
# Evaluated before a model call is forwarded (enforcement point
# inference.request). Every string in the prompt is checked: the messages
# (Chat Completions, Anthropic Messages), the system prompt, and the
# Responses API's input and instructions. Content given as a string, as an
# array of parts ({"type": "text", "text": …}), or nested in tool results
# and tool call arguments is all covered. The reason names the kind of
# secret and where it is, never the secret.
#
# The package's decision is in models.rego: each reason added here denies
# the request.
package infertrail.inference.request

# Each kind of secret has keywords, one of which a string must contain
# before the slower pattern is tried (as gitleaks does).
secret_kinds := {
	"an AWS access key id": {"keywords": ["AKIA", "ASIA"], "pattern": `\b(AKIA|ASIA)[0-9A-Z]{16}\b`},
	"a GitHub personal access token": {"keywords": ["ghp_"], "pattern": `\bghp_[A-Za-z0-9]{36}\b`},
	"a secret API key (sk-…)": {"keywords": ["sk-"], "pattern": `\bsk-[A-Za-z0-9_-]{20,}`},
	"a PEM private key": {"keywords": ["PRIVATE KEY-----"], "pattern": `-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----`},
}

# suspect holds when a keyword appears anywhere in the prompt. Most
# requests carry none, and are cleared by a few substring searches of
# input.inference.prompt_text, every string of the prompt in one, which
# the gateway prepares. (An input without it, from elsewhere, is searched
# as JSON: keywords are plain ASCII, which JSON leaves as is.)
suspect if {
	some secret in secret_kinds
	some keyword in secret.keywords
	contains(prompt_text, keyword)
}

prompt_text := input.inference.prompt_text if {
	is_string(input.inference.prompt_text)
} else := json.marshal(input.inference)

# carries(text) is the kinds of secret in text.
carries(text) := {kind |
	some kind, secret in secret_kinds
	some keyword in secret.keywords
	contains(text, keyword)
	regex.match(secret.pattern, text)
}

# text_of(x) is every string in x, one per line.
text_of(x) := concat("\n", [s | walk(x, [_, s]); is_string(s)])

# A suspect request is denied for each secret found in it; most requests
# are cleared by suspect alone.
deny_reasons contains reason if {
	suspect
	some reason in secrets_found
}

# secrets_found names each secret in the prompt: its kind, and where it is.
secrets_found contains sprintf("message %d carries %s", [i, kind]) if {
	some i, message in input.inference.messages
	some kind in carries(text_of(message))
}

secrets_found contains sprintf("input item %d carries %s", [i, kind]) if {
	is_array(input.inference.input)
	some i, item in input.inference.input
	some kind in carries(text_of(item))
}

secrets_found contains sprintf("the input carries %s", [kind]) if {
	is_string(input.inference.input)
	some kind in carries(input.inference.input)
}

secrets_found contains sprintf("%s %s", [where, kind]) if {
	some field, where in {"system": "the system prompt carries", "instructions": "the instructions carry"}
	some kind in carries(text_of(input.inference[field]))
}
