# Prompts must not carry secrets.
#
# Evaluated before a model call is forwarded (enforcement point
# inference.request), as examples/policies/secrets.rego: a message that
# carries an AWS access key id, a GitHub token, an sk- API key or a PEM
# private key is denied. The reason names the kind of secret and the
# message, never the secret.
package infertrail.inference.request

secret_kinds := {
	"an AWS access key id": {"keywords": ["AKIA", "ASIA"], "pattern": `\b(AKIA|ASIA)[0-9A-Z]{16}\b`},
	"a GitHub personal access token": {"keywords": ["ghp_"], "pattern": `\bghp_[A-Za-z0-9]{36}\b`},
	"a secret API key (sk-…)": {"keywords": ["sk-"], "pattern": `\bsk-[A-Za-z0-9_-]{20,}`},
	"a PEM private key": {"keywords": ["PRIVATE KEY-----"], "pattern": `-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----`},
}

secret_keywords := {keyword | some secret in secret_kinds; some keyword in secret.keywords}

# Most prompts carry no keyword and are cleared by a few substring searches.
secret_suspect if {
	some keyword in secret_keywords
	contains(prompt_json, keyword)
}

carries(text) := {kind |
	some kind, secret in secret_kinds
	some keyword in secret.keywords
	contains(text, keyword)
	regex.match(secret.pattern, text)
}

deny_reasons contains sprintf("message %d carries %s", [i, kind]) if {
	secret_suspect
	some i, message in input.inference.messages
	some kind in carries(text_of(message))
}
