package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// apiError is an error answer of the API, with its status.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code) }

// apiRequest builds the in-process request to the API that a page makes
// for the signed-in principal: the same token, the same remote address.
func apiRequest(r *http.Request, u signedIn, method, path string, q url.Values, header http.Header) *http.Request {
	target := path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(r.Context(), method, target, nil)
	if err != nil { // only a malformed path, which the UI never builds
		panic(fmt.Sprintf("web: api request %s %s: %v", method, target, err))
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if u.s.token != "" {
		req.Header.Set("Authorization", "Bearer "+u.s.token)
	}
	req.RemoteAddr = r.RemoteAddr
	req.Host = r.Host
	req.TLS = r.TLS
	return req
}

// bufferWriter keeps an API answer in memory.
type bufferWriter struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (b *bufferWriter) Header() http.Header { return b.header }
func (b *bufferWriter) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}
func (b *bufferWriter) Write(p []byte) (int, error) {
	if b.code == 0 {
		b.code = http.StatusOK
	}
	return b.body.Write(p)
}

// call sends a request to the API and returns its body, or the API's
// error as an *apiError.
func (h *Handler) call(r *http.Request, u signedIn, method, path string, q url.Values, header http.Header) ([]byte, error) {
	bw := &bufferWriter{header: http.Header{}}
	h.cfg.API.ServeHTTP(bw, apiRequest(r, u, method, path, q, header))
	if bw.code == 0 {
		bw.code = http.StatusOK
	}
	if bw.code >= 300 {
		return nil, errorOf(bw.code, bw.body.Bytes())
	}
	return bw.body.Bytes(), nil
}

// getJSON calls the API and decodes its JSON answer into out.
func (h *Handler) getJSON(r *http.Request, u signedIn, path string, q url.Values, header http.Header, out any) error {
	body, err := h.call(r, u, http.MethodGet, path, q, header)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode answer of %s: %w", path, err)
	}
	return nil
}

// errorOf reads the API's error body.
func errorOf(code int, body []byte) error {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	ae := &apiError{Status: code, Code: "error", Message: strings.TrimSpace(string(body))}
	if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
		ae.Code, ae.Message = e.Error.Code, e.Error.Message
	}
	if ae.Message == "" {
		ae.Message = http.StatusText(code)
	}
	return ae
}

// passWriter streams a successful API answer (a download) straight to the
// browser, and keeps an error answer for the error page.
type passWriter struct {
	w      http.ResponseWriter
	header http.Header
	code   int
	errb   bytes.Buffer
}

func (p *passWriter) Header() http.Header { return p.header }
func (p *passWriter) WriteHeader(code int) {
	if p.code != 0 {
		return
	}
	p.code = code
	if code == http.StatusOK {
		for _, k := range []string{"Content-Type", "Content-Length", "Content-Disposition"} {
			if v := p.header.Get(k); v != "" {
				p.w.Header().Set(k, v)
			}
		}
		p.w.WriteHeader(code)
	}
}
func (p *passWriter) Write(b []byte) (int, error) {
	if p.code == 0 {
		p.WriteHeader(http.StatusOK)
	}
	if p.code == http.StatusOK {
		return p.w.Write(b)
	}
	return p.errb.Write(b)
}

// stream sends the API's answer to the browser when it succeeds, and
// returns its error otherwise (nothing was written then).
func (h *Handler) stream(w http.ResponseWriter, r *http.Request, u signedIn, path string, q url.Values, header http.Header) error {
	pw := &passWriter{w: w, header: http.Header{}}
	h.cfg.API.ServeHTTP(pw, apiRequest(r, u, http.MethodGet, path, q, header))
	if pw.code == 0 || pw.code == http.StatusOK {
		return nil
	}
	return errorOf(pw.code, pw.errb.Bytes())
}
