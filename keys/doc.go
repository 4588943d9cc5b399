// Package keys provides envelope encryption for stored content: AES-256-GCM
// data keys (DEKs), wrapped by key-encryption keys (KEKs) kept outside the
// database, so that destroying a wrapped DEK erases its content.
//
// A [Cipher] seals content under one DEK. A [KEK] wraps DEKs for storage; the
// [Keyring] is the KEK kept in a key file in the data folder, and an external
// KMS can be used instead by implementing [KEK] (see docs/keys.md). A
// wrapped key names the KEK that wrapped it ([WrappedBy]), which is what lets
// a KEK be rotated while old content stays readable.
package keys
