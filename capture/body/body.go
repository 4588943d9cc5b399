// Package body reads the bodies of capture requests (OTLP exports, OPA
// decision logs): bounded before and after gzip, with errors that say
// which limit or encoding was at fault.
package body

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/infertrail/infertrail"
)

// ErrUnsupportedMedia is a content type or encoding the receiver does not
// take (HTTP 415).
var ErrUnsupportedMedia = errors.New("unsupported media type")

// Read reads r's body, at most limit bytes, undoing a gzip
// Content-Encoding (again to at most limit bytes). A body over the limit
// is an error wrapping infertrail.ErrTooLarge; one that cannot be read or
// is not valid gzip, infertrail.ErrInvalid; another encoding,
// ErrUnsupportedMedia.
func Read(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fmt.Errorf("the body is larger than %d bytes: %w", limit, infertrail.ErrTooLarge)
		}
		return nil, fmt.Errorf("read the body: %v: %w", err, infertrail.ErrInvalid)
	}
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		return raw, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("the body is not gzip: %v: %w", err, infertrail.ErrInvalid)
		}
		out, err := io.ReadAll(io.LimitReader(zr, limit+1))
		if err != nil {
			return nil, fmt.Errorf("the body is not valid gzip: %v: %w", err, infertrail.ErrInvalid)
		}
		if int64(len(out)) > limit {
			return nil, fmt.Errorf("the body is larger than %d bytes once decompressed: %w", limit, infertrail.ErrTooLarge)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("Content-Encoding %q: want gzip or none: %w", enc, ErrUnsupportedMedia)
	}
}
