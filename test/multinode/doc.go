// Package multinode holds end-to-end tests that run several infertrail
// serve processes against one PostgreSQL database; it has no code of its own.
package multinode
