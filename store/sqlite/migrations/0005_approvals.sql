-- Calls held for a human's approval (a policy decided require_approval).
-- This is operational state beside the log, not evidence: the evidence is
-- the policy_decision record that asked (decision_id) and the approval
-- record that answered (record). A row is added pending and decided once,
-- by a compare-and-set on status; approver, decided and record are NULL
-- until then. The node that holds the call polls its row by id; listings
-- walk the pending rows, or a tenant's, newest first.
CREATE TABLE approvals (
	id          BLOB    PRIMARY KEY CHECK (length(id) = 16),
	tenant      TEXT    NOT NULL,
	status      TEXT    NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'expired', 'cancelled')),
	decision_id BLOB    NOT NULL CHECK (length(decision_id) = 16),
	governs     BLOB    NOT NULL CHECK (length(governs) = 16),
	point       TEXT    NOT NULL,
	summary     TEXT    NOT NULL,
	trace_id    TEXT    NOT NULL,
	session_id  TEXT    NOT NULL,
	requested   INTEGER NOT NULL, -- Unix nanoseconds
	deadline    INTEGER NOT NULL, -- Unix nanoseconds
	approver    TEXT,
	decided     INTEGER,          -- Unix nanoseconds
	record      BLOB,
	CHECK ((status = 'pending') = (decided IS NULL)),
	CHECK ((approver IS NULL) = (decided IS NULL) AND (record IS NULL) = (decided IS NULL))
) WITHOUT ROWID;
CREATE INDEX approvals_status ON approvals (status, requested);
CREATE INDEX approvals_tenant ON approvals (tenant, requested);
