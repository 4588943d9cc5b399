// Package infertrail is the vocabulary of InferTrail, an inference-level
// audit trail: the record, its canonical form, and the contracts that the
// log, the stores and the capture adapters share.
//
// # Concepts
//
// Every AI interaction becomes one or more immutable records: an inference
// (prompt, response, model identity), a policy decision, a tool call, a
// downstream call, a retrieval, a credential event, an approval, an access
// to the evidence itself, or an erasure. A record has metadata in clear
// (kind, times, tenant, actor, session, W3C trace context, links and
// attributes named after the OpenTelemetry GenAI conventions) and content
// (messages, arguments, results, bodies).
//
// Each record is sequenced into one append-only log. Its leaf is the RFC 8785
// (JCS) canonical JSON of the record's envelope: the metadata, the sequence
// number, and for each content field a salted SHA-256 commitment instead of
// the content itself. Leaves form an RFC 6962 Merkle tree whose signed
// checkpoints follow the C2SP tlog-checkpoint format.
//
// # Guarantees
//
// A record that a store has acknowledged is durable and can never be changed
// or removed without every later checkpoint failing to verify. Content is
// stored apart from the leaf, so it can be encrypted and erased without
// touching the tree. The canonical bytes of a leaf are reproducible by a
// third party from an export, in any language that implements RFC 8785.
package infertrail
