// Package body reads the bodies of capture requests (OTLP exports, OPA
// decision logs): bounded before and after gzip, with errors that say
// which limit or encoding was at fault.
package body

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

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

// Status says how a capture request that stored nothing is answered: its
// HTTP status and a short code for the body, setting WWW-Authenticate or
// Retry-After when the status calls for one. 400 is for bad data the
// client must not send again; 429 and 503 ask it to retry.
func Status(w http.ResponseWriter, r *http.Request, err error) (int, string) {
	var rl *infertrail.RateLimitError
	switch {
	case errors.Is(err, ErrUnsupportedMedia):
		return http.StatusUnsupportedMediaType, "unsupported_media_type"
	case errors.Is(err, infertrail.ErrUnauthenticated):
		w.Header().Set("WWW-Authenticate", `Bearer realm="infertrail"`)
		return http.StatusUnauthorized, "unauthenticated"
	case errors.Is(err, infertrail.ErrForbidden):
		return http.StatusForbidden, "forbidden"
	case errors.As(err, &rl):
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(max(rl.RetryAfter, time.Second).Seconds()))))
		return http.StatusTooManyRequests, "rate_limited"
	case errors.Is(err, infertrail.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "too_large"
	case errors.Is(err, infertrail.ErrInvalid):
		return http.StatusBadRequest, "invalid"
	case errors.Is(err, infertrail.ErrConflict):
		// An id already recorded with different content: the same data
		// will not be taken on a retry either.
		return http.StatusBadRequest, "conflict"
	case errors.Is(err, infertrail.ErrPushback), errors.Is(err, infertrail.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		w.Header().Set("Retry-After", "1")
		return http.StatusServiceUnavailable, "unavailable"
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		return 499, "canceled" // the client went away
	}
	return http.StatusInternalServerError, "internal"
}
