package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/ledger"
)

// maxAdminBody bounds the body of an administrative request.
const maxAdminBody = 16 << 10

type erasureRequest struct {
	Scope     string `json:"scope"`
	Reason    string `json:"reason"`
	Authority string `json:"authority,omitempty"`
}

type erasureResponse struct {
	Seq   int64  `json:"seq"`
	ID    string `json:"id"`
	Keys  int    `json:"keys"`
	Blobs int64  `json:"blobs"`
}

// erase crypto-shreds a scope's content and appends the erasure record.
func (s *Server) erase(w http.ResponseWriter, r *http.Request) {
	var req erasureRequest
	if err := decodeBody(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := reachScope(r, req.Scope); err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := s.log.Erase(r.Context(), ledger.Erasure{Scope: infertrail.Scope(req.Scope), Reason: req.Reason,
		Authority: req.Authority, Actor: actor(r), Source: "api"})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, erasureResponse{Seq: out.Seq, ID: out.ID.String(), Keys: out.Keys, Blobs: out.Blobs})
}

type holdJSON struct {
	ID         string `json:"id"`
	Tenant     string `json:"tenant"`
	Scope      string `json:"scope"`
	Reason     string `json:"reason"`
	CreatedBy  string `json:"created_by"`
	Created    string `json:"created"`
	ReleasedBy string `json:"released_by,omitempty"`
	Released   string `json:"released,omitempty"`
}

func toHoldJSON(h infertrail.Hold) holdJSON {
	j := holdJSON{ID: h.ID.String(), Tenant: h.Tenant, Scope: string(h.Scope), Reason: h.Reason, CreatedBy: h.CreatedBy,
		Created: time.Unix(0, h.Created).UTC().Format(time.RFC3339Nano)}
	if !h.Active() {
		j.ReleasedBy, j.Released = h.ReleasedBy, time.Unix(0, h.Released).UTC().Format(time.RFC3339Nano)
	}
	return j
}

type holdRequest struct {
	Scope  string `json:"scope"`
	Reason string `json:"reason"`
}

func (s *Server) addHold(w http.ResponseWriter, r *http.Request) {
	var req holdRequest
	if err := decodeBody(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := reachScope(r, req.Scope); err != nil {
		s.writeError(w, r, err)
		return
	}
	h, err := s.log.PlaceHold(r.Context(), infertrail.Scope(req.Scope), req.Reason, actor(r))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toHoldJSON(h))
}

func (s *Server) listHolds(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tenant := q.Get("tenant")
	if p := principal(r); tenant == "" && p.Tenant != infertrail.AllTenants {
		tenant = p.Tenant
	}
	if tenant != "" {
		if err := reachTenant(r, "tenant", tenant); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	all := false
	switch v := q.Get("all"); v {
	case "", "false":
	case "true":
		all = true
	default:
		s.writeError(w, r, &infertrail.FieldError{Record: -1, Field: "all", Reason: fmt.Sprintf("%q: want true or false", v), Err: infertrail.ErrInvalid})
		return
	}
	hs, err := s.log.Holds(r.Context(), tenant, !all)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.recordAction(r, "hold.list", map[string]json.RawMessage{"access.holds": json.RawMessage(strconv.Itoa(len(hs)))}); err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]holdJSON, len(hs))
	for i, h := range hs {
		out[i] = toHoldJSON(h)
	}
	writeJSON(w, http.StatusOK, map[string][]holdJSON{"holds": out})
}

type releaseRequest struct {
	Tenant string `json:"tenant"`
	Reason string `json:"reason,omitempty"`
}

func (s *Server) releaseHold(w http.ResponseWriter, r *http.Request) {
	var req releaseRequest
	if err := decodeBody(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	id, err := uuidParam("id", r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Tenant == "" {
		req.Tenant = ownTenant(r)
	}
	if err := reachTenant(r, "tenant", req.Tenant); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.log.ReleaseHold(r.Context(), req.Tenant, id, req.Reason, actor(r)); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type fingerprintRequest struct {
	Credential string `json:"credential"`
	// Before, when set, continues an earlier answer's scan below this
	// sequence number (its next_before).
	Before *int64 `json:"before,omitempty"`
}

type credentialUse struct {
	Seq    int64  `json:"seq"`
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Tenant string `json:"tenant"`
	Time   string `json:"time"`
}

type fingerprintResponse struct {
	Fingerprint string          `json:"fingerprint"`
	Uses        []credentialUse `json:"uses"`
	// The records scanned: [scanned_from, scanned_to).
	ScannedFrom int64 `json:"scanned_from"`
	ScannedTo   int64 `json:"scanned_to"`
	// NextBefore is set when older records remain to be scanned.
	NextBefore *int64 `json:"next_before,omitempty"`
}

// fingerprintScan is how many records one fingerprint request scans, newest
// first; maxUses bounds the uses it lists.
const (
	fingerprintScan = 200_000
	maxUses         = 1000
)

// fingerprint answers the keyed fingerprint of a credential, as records
// carry it (actor.credential_fingerprint, and redacted content), and the
// records whose metadata carries it, scanning the log from the newest
// record back (fingerprintScan records a request; next_before continues).
// The trail never holds the credential: the request is recorded with the
// fingerprint only.
func (s *Server) fingerprint(w http.ResponseWriter, r *http.Request) {
	var req fingerprintRequest
	if err := decodeBody(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	p := principal(r)
	if req.Credential == "" {
		s.writeError(w, r, &infertrail.FieldError{Record: -1, Field: "credential", Reason: "required", Err: infertrail.ErrInvalid})
		return
	}
	if s.cfg.Fingerprinter == nil {
		s.writeError(w, r, fmt.Errorf("no fingerprint key configured: %w", infertrail.ErrUnavailable))
		return
	}
	fp := s.cfg.Fingerprinter.Of(req.Credential)
	size, err := s.log.Store().TreeSize(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	to := size
	if req.Before != nil {
		if *req.Before < 0 {
			s.writeError(w, r, &infertrail.FieldError{Record: -1, Field: "before", Reason: "negative", Err: infertrail.ErrInvalid})
			return
		}
		to = min(*req.Before, size)
	}
	from := max(0, to-fingerprintScan)
	resp := fingerprintResponse{Fingerprint: fp, Uses: []credentialUse{}, ScannedFrom: from, ScannedTo: to}
	needle := []byte(fp)
	err = s.log.Store().Entries(r.Context(), from, to, func(e *infertrail.Entry) error {
		if len(resp.Uses) < maxUses && p.Reaches(e.Tenant) && bytes.Contains(e.Leaf, needle) {
			resp.Uses = append(resp.Uses, credentialUse{Seq: e.Seq, ID: e.ID.String(), Kind: string(e.Kind), Tenant: e.Tenant,
				Time: time.Unix(0, e.Time).UTC().Format(time.RFC3339Nano)})
		}
		return nil
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	slices.Reverse(resp.Uses) // newest first
	if from > 0 {
		resp.NextBefore = &from
	}
	if err := s.recordAction(r, "fingerprint", map[string]json.RawMessage{
		"access.fingerprint": jsonString(fp),
		"access.uses":        json.RawMessage(strconv.Itoa(len(resp.Uses))),
	}); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// reachScope refuses a scope in a tenant the caller does not reach. A
// malformed scope passes, for the ledger to refuse with its reason.
func reachScope(r *http.Request, scope string) error {
	sel, err := infertrail.ParseScope(scope)
	if err != nil {
		return nil
	}
	return reachTenant(r, "scope", sel.Tenant())
}
