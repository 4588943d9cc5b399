package httpapi

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/ledger"
)

// intParam parses a non-negative integer path or query parameter.
func intParam(name, v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != v {
		return 0, &infertrail.FieldError{Record: -1, Field: name, Reason: fmt.Sprintf("%q is not a non-negative decimal integer", v), Err: infertrail.ErrInvalid}
	}
	return n, nil
}

// uuidParam parses a UUID path or query parameter.
func uuidParam(name, v string) (infertrail.UUID, error) {
	id, err := infertrail.ParseUUID(v)
	if err != nil {
		return id, &infertrail.FieldError{Record: -1, Field: name, Reason: err.Error(), Err: infertrail.ErrInvalid}
	}
	return id, nil
}

func hashesB64(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.String()
	}
	return out
}

type recordResponse struct {
	Seq      int64                      `json:"seq"`
	ID       string                     `json:"id"`
	LeafHash string                     `json:"leaf_hash"`
	Record   json.RawMessage            `json:"record"`
	Content  map[string]json.RawMessage `json:"content,omitempty"`
	Salts    map[string]string          `json:"salts,omitempty"`
	// ErasedBy is the sequence number of the erasure record that
	// crypto-shredded the record's content, if one did.
	ErasedBy *int64 `json:"content_erased_by,omitempty"`
}

// record serves one record's leaf. With ?content=true it also serves the
// content and each field's salt, so that the reader can check the
// commitments; such a read first appends an access record.
func (s *Server) record(w http.ResponseWriter, r *http.Request) {
	seq, err := intParam("seq", r.PathValue("seq"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if r.URL.Query().Get("content") == "true" && !principal(r).Can(infertrail.PermContent) {
		s.writeError(w, r, forbidden(principal(r), infertrail.PermContent))
		return
	}
	e, err := s.entry(r, seq)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := recordResponse{Seq: e.Seq, ID: e.ID.String(), LeafHash: tlog.RecordHash(e.Leaf).String(), Record: e.Leaf}
	switch v := r.URL.Query().Get("content"); v {
	case "", "false":
	case "true":
		if err := s.recordAccess(r, "read_content", &e); err != nil {
			s.writeError(w, r, err)
			return
		}
		resp.Content, err = s.log.Content(r.Context(), &e)
		var erased *infertrail.ErasedError
		if errors.As(err, &erased) {
			resp.ErasedBy, err = &erased.ErasedBy, nil
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		resp.Salts = make(map[string]string, len(e.Content))
		for _, ref := range e.Content {
			if _, ok := resp.Content[ref.Field]; ok {
				resp.Salts[ref.Field] = hex.EncodeToString(ref.Salt[:])
			}
		}
	default:
		s.writeError(w, r, &infertrail.FieldError{Record: -1, Field: "content", Reason: fmt.Sprintf("%q: want true or false", v), Err: infertrail.ErrInvalid})
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// recordAccess appends the access record that a read of evidence content
// leaves behind, before the content is served.
func (s *Server) recordAccess(r *http.Request, action string, e *infertrail.Entry) error {
	attrs := map[string]json.RawMessage{
		"access.action":     jsonString(action),
		"access.record.seq": json.RawMessage(strconv.FormatInt(e.Seq, 10)),
		"http.request.path": jsonString(r.URL.Path),
	}
	reason, err := s.reason(r, s.cfg.RequireReason)
	if err != nil {
		return err
	}
	if reason != "" {
		attrs["access.reason"] = jsonString(reason)
	}
	rec := &infertrail.Record{
		Kind:       infertrail.KindAccess,
		Tenant:     e.Tenant,
		Actor:      actor(r),
		Source:     "api",
		Links:      []infertrail.Link{{Rel: "reads", ID: e.ID}},
		Attributes: attrs,
	}
	if _, err := s.log.Append(r.Context(), []ledger.Submission{{Record: rec}}); err != nil {
		return fmt.Errorf("record access: %w", err)
	}
	return nil
}

// entry reads a record of a tenant the caller reaches; another tenant's
// record is not found, as if it did not exist.
func (s *Server) entry(r *http.Request, seq int64) (infertrail.Entry, error) {
	e, err := s.log.Entry(r.Context(), seq)
	if err == nil && !principal(r).Reaches(e.Tenant) {
		return infertrail.Entry{}, fmt.Errorf("record %d: %w", seq, infertrail.ErrNotFound)
	}
	return e, err
}

func jsonString(s string) json.RawMessage { return infertrail.AppendString(nil, s) }

type proofResponse struct {
	Seq        int64    `json:"seq"`
	TreeSize   int64    `json:"tree_size"`
	LeafHash   string   `json:"leaf_hash"`
	Proof      []string `json:"proof"`
	Checkpoint string   `json:"checkpoint"`
}

func (s *Server) inclusion(r *http.Request) (infertrail.Entry, tlog.RecordProof, ledger.Checkpoint, error) {
	seq, err := intParam("seq", r.PathValue("seq"))
	if err != nil {
		return infertrail.Entry{}, nil, ledger.Checkpoint{}, err
	}
	var size int64
	if v := r.URL.Query().Get("tree_size"); v != "" {
		if size, err = intParam("tree_size", v); err != nil {
			return infertrail.Entry{}, nil, ledger.Checkpoint{}, err
		}
	}
	e, err := s.entry(r, seq)
	if err != nil {
		return infertrail.Entry{}, nil, ledger.Checkpoint{}, err
	}
	p, cp, err := s.log.InclusionProof(r.Context(), seq, size)
	return e, p, cp, err
}

// proof serves an inclusion proof and the checkpoint it leads to.
func (s *Server) proof(w http.ResponseWriter, r *http.Request) {
	e, p, cp, err := s.inclusion(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, proofResponse{Seq: e.Seq, TreeSize: cp.Size, LeafHash: tlog.RecordHash(e.Leaf).String(),
		Proof: hashesB64(p), Checkpoint: string(cp.Note)})
}

// receipt serves a C2SP tlog-proof for a record.
func (s *Server) receipt(w http.ResponseWriter, r *http.Request) {
	e, p, cp, err := s.inclusion(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	text, err := ledger.FormatProof(e.Seq, p, cp)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(text)
}

// consistency serves a proof that one tree size extends another.
func (s *Server) consistency(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, err := intParam("from", q.Get("from"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	to, err := intParam("to", q.Get("to"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p, err := s.log.ConsistencyProof(r.Context(), from, to)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"from": from, "to": to, "proof": hashesB64(p)})
}

func (s *Server) logInfo(w http.ResponseWriter, r *http.Request) {
	size, err := s.log.TreeSize(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := map[string]any{"origin": s.log.Origin(), "verifier_key": s.cfg.VerifierKey, "tree_size": size}
	if cp, err := s.log.LatestCheckpoint(r.Context()); err == nil {
		out["checkpoint"] = map[string]any{"size": cp.Size, "root": cp.Root.String()}
	}
	writeJSON(w, http.StatusOK, out)
}

// checkpoint serves the latest signed checkpoint; for a log that has grown
// since, that checkpoint is at most about a second old.
func (s *Server) checkpoint(w http.ResponseWriter, r *http.Request) {
	cp, err := s.log.LatestCheckpoint(r.Context())
	if err != nil {
		cp, err = s.log.SignCheckpoint(r.Context())
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(cp.Note)
}

// tile serves C2SP tlog-tiles: hash tiles and entry bundles. Full tiles
// never change and may be cached forever.
func (s *Server) tile(w http.ResponseWriter, r *http.Request) {
	level, index, width, entries, err := ledger.ParseTilePath(strings.TrimPrefix(r.URL.Path, "/"))
	if err != nil {
		s.writeError(w, r, fmt.Errorf("%w: %v", infertrail.ErrNotFound, err))
		return
	}
	if entries && principal(r).Tenant != infertrail.AllTenants {
		s.writeError(w, r, fmt.Errorf("entry bundles hold every tenant's records: only a caller that reaches every tenant may read them: %w", infertrail.ErrForbidden))
		return
	}
	var data []byte
	if entries {
		data, err = s.log.EntryBundle(r.Context(), index, width)
	} else {
		data, err = s.log.Tile(r.Context(), level, index, width)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if width == ledger.TileWidth {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	w.Write(data)
}
