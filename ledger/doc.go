// Package ledger sequences records into InferTrail's tamper-evident log:
// group commit into a store, RFC 6962 tree hashes written in the same
// transaction, signed C2SP checkpoints, proofs, tiles, and verification.
package ledger
