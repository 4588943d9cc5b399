-- Calls held for a human's approval (a policy decided require_approval).
-- This is operational state beside the log, not evidence: the evidence is
-- the policy_decision record that asked (decision_id) and the approval
-- record that answered (record). A row is added pending and decided once,
-- by a compare-and-set on status (an UPDATE … WHERE status = 'pending',
-- which row locking makes exactly one concurrent caller win); approver,
-- decided and record are NULL until then. The node that holds the call
-- polls its row by id; listings walk the pending rows, or a tenant's,
-- newest first.
CREATE TABLE approvals (
    id          uuid   PRIMARY KEY,
    tenant      text   NOT NULL,
    status      text   NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'expired', 'cancelled')),
    decision_id uuid   NOT NULL,
    governs     uuid   NOT NULL,
    point       text   NOT NULL,
    summary     text   NOT NULL,
    trace_id    text   NOT NULL,
    session_id  text   NOT NULL,
    requested   bigint NOT NULL, -- Unix nanoseconds
    deadline    bigint NOT NULL, -- Unix nanoseconds
    approver    text,
    decided     bigint,          -- Unix nanoseconds
    record      uuid,
    CHECK ((status = 'pending') = (decided IS NULL)),
    CHECK ((approver IS NULL) = (decided IS NULL) AND (record IS NULL) = (decided IS NULL))
);
CREATE INDEX approvals_status ON approvals (status, requested);
CREATE INDEX approvals_tenant ON approvals (tenant, requested);
