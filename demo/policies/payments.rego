# Payments above 1,000 EUR need a person's approval.
#
# Evaluated before an MCP tools/call is forwarded (enforcement point
# tool.call), as examples/policies/payments.rego: a call to a payment tool
# whose amount is above the limit is held until an approver decides; every
# other tool call is allowed. The amount is read from arguments.amount_eur,
# else arguments.amount, as a number or a numeric string.
package infertrail.tool.call

payment_tools := {"pay", "transfer", "approve_payment"}

limit_eur := 1000

default decision := {"result": "allow"}

decision := {
	"result": "require_approval",
	"reasons": [sprintf("%s of %v EUR is above the %v EUR limit for unattended payments", [input.tool.name, amount, limit_eur])],
} if {
	input.tool.name in payment_tools
	amount > limit_eur
} else := {
	# A payment whose amount cannot be read is not waved through.
	"result": "require_approval",
	"reasons": [sprintf("%s has no readable amount_eur or amount", [input.tool.name])],
} if {
	input.tool.name in payment_tools
	not amount
}

raw_amount := input.tool.arguments.amount_eur if {
	input.tool.arguments.amount_eur != null
} else := input.tool.arguments.amount

amount := raw_amount if is_number(raw_amount)

amount := to_number(raw_amount) if {
	is_string(raw_amount)
	regex.match(`^\s*-?[0-9]+(\.[0-9]+)?\s*$`, raw_amount)
}
