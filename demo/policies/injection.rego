# A prompt-injection guardrail, for the demo's red-team scenario.
#
# Evaluated before a model call is forwarded (enforcement point
# inference.request). A user or tool message that tries to override the
# agent's instructions, extract its system prompt or switch it to a
# jailbreak persona is denied. It matches phrases in plain text only: an
# instruction that is encoded (base64, a cipher, another language) passes,
# and the demo reports that attempt as the guardrail's miss.
package infertrail.inference.request

injection_kinds := {
	"an instruction override": `\b(ignore|disregard|forget) (all |any )?(of )?(the |your )?(previous|prior|above|earlier|system) (instructions|rules|directions|guidelines)`,
	"a system prompt extraction": `\b(reveal|repeat|print|show|output|leak)( me)? (your|the) (system prompt|hidden instructions|initial instructions)`,
	"a jailbreak persona": `\b(do anything now|developer mode|you are now dan)\b`,
}

injection_keywords := {"ignore", "disregard", "forget", "system prompt", "instructions", "anything now", "developer mode", "you are now"}

injection_suspect if {
	prompt := lower(prompt_json)
	some keyword in injection_keywords
	contains(prompt, keyword)
}

deny_reasons contains sprintf("message %d looks like a prompt injection: %s", [i, kind]) if {
	injection_suspect
	some i, message in input.inference.messages
	message.role != "system"
	some kind, pattern in injection_kinds
	regex.match(pattern, lower(text_of(message)))
}
