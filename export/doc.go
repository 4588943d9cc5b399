// Package export writes evidence bundles, compliance reports and SIEM streams.
package export
