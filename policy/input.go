package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/infertrail/infertrail"
)

// errSlow means that a value holds something appendJSON leaves to
// encoding/json: a type other than the JSON ones, or a string that is not
// valid UTF-8.
var errSlow = errors.New("not a plain JSON value")

// encoder is appendJSON's scratch space, reused across decisions: the
// canonical form, and the members of the objects being written (those of
// an object and of the objects it holds, one after the other).
type encoder struct {
	buf     []byte
	members []member
}

type member struct {
	key   string
	value any
}

var encoders = sync.Pool{New: func() any { return &encoder{buf: make([]byte, 0, 4<<10)} }}

// prepareInput returns the digest of input's RFC 8785 form and the input
// document the policy evaluates. The document is converted to Rego values
// lazily, as the policy reaches into it; when input holds other than plain
// JSON types, it is first replaced by the decoding of its canonical form, so
// that the policy sees exactly what was digested.
func prepareInput(input map[string]any) (string, ast.Value, error) {
	enc := encoders.Get().(*encoder)
	defer encoders.Put(enc)
	canon, err := enc.appendJSON(enc.buf[:0], input, 0)
	clear(enc.members[:cap(enc.members)]) // hold on to nothing of this input
	enc.members = enc.members[:0]
	if errors.Is(err, errSlow) {
		var raw []byte
		if raw, err = json.Marshal(input); err == nil {
			canon, err = infertrail.AppendCanonical(enc.buf[:0], raw)
		}
		if err == nil {
			input = nil
			err = util.UnmarshalJSON(canon, &input)
		}
	}
	if err != nil {
		return "", nil, err
	}
	enc.buf = canon
	sum := sha256.Sum256(canon)
	const prefix = "sha256:"
	var digest [len(prefix) + 2*sha256.Size]byte
	copy(digest[:], prefix)
	hex.Encode(digest[len(prefix):], sum[:])
	return string(digest[:]), ast.LazyObject(input), nil
}

// appendJSON appends the RFC 8785 form of v, as infertrail.Canonicalize
// gives it for json.Marshal(v), to dst.
func (enc *encoder) appendJSON(dst []byte, v any, depth int) ([]byte, error) {
	if depth > infertrail.MaxDepth {
		return dst, errSlow // encoding/json and Canonicalize say what is wrong
	}
	var err error
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		return strconv.AppendBool(dst, v), nil
	case string:
		return appendString(dst, v)
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return dst, errSlow
		}
		return infertrail.AppendNumber(dst, v)
	case int:
		return appendInt(dst, int64(v))
	case int64:
		return appendInt(dst, v)
	case json.Number:
		return infertrail.AppendCanonical(dst, []byte(v))
	case map[string]any:
		if v == nil {
			return dst, errSlow // null, as encoding/json has it
		}
		// This object's members are enc.members[start:end]; the objects
		// it holds append theirs after them, and take them off again.
		start := len(enc.members)
		for k, x := range v {
			enc.members = append(enc.members, member{k, x})
		}
		end := len(enc.members)
		slices.SortFunc(enc.members[start:end], func(a, b member) int { return infertrail.CompareKeys(a.key, b.key) })
		dst = append(dst, '{')
		for i := start; i < end; i++ {
			if i > start {
				dst = append(dst, ',')
			}
			m := enc.members[i]
			if dst, err = appendString(dst, m.key); err != nil {
				return dst, err
			}
			dst = append(dst, ':')
			if dst, err = enc.appendJSON(dst, m.value, depth+1); err != nil {
				return dst, err
			}
		}
		enc.members = enc.members[:start]
		return append(dst, '}'), nil
	case []any:
		return appendArray(enc, dst, v, depth)
	case []string:
		return appendArray(enc, dst, v, depth)
	}
	return dst, errSlow
}

// appendString appends s as a JSON string, as infertrail.AppendString
// does, or gives errSlow if s is not valid UTF-8: the slow path decides
// what such a string becomes.
func appendString(dst []byte, s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return dst, errSlow
	}
	return infertrail.AppendString(dst, s), nil
}

// appendInt appends an integer within ±(2^53-1); Canonicalize decides on
// the others.
func appendInt(dst []byte, i int64) ([]byte, error) {
	const maxSafe = 1<<53 - 1
	if i > maxSafe || i < -maxSafe {
		return dst, errSlow
	}
	return strconv.AppendInt(dst, i, 10), nil
}

// appendArray appends a JSON array of v's elements; a nil slice takes the
// slow path, as encoding/json writes it as null.
func appendArray[T any](enc *encoder, dst []byte, v []T, depth int) ([]byte, error) {
	if v == nil {
		return dst, errSlow
	}
	dst = append(dst, '[')
	for i, x := range v {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = enc.appendJSON(dst, x, depth+1); err != nil {
			return dst, err
		}
	}
	return append(dst, ']'), nil
}

// PromptFields are the members of a model request that hold its prompt,
// in the order PromptText reads them: Chat Completions' and Anthropic's
// messages, Anthropic's system prompt, the Responses API's input and
// instructions.
var PromptFields = []string{"messages", "system", "input", "instructions"}

// PromptText returns every string value in the prompt fields of req (a
// request body as decoded), one per line: message text, parts, tool call
// arguments and tool results alike, objects' members in key order, so that
// the same request always gives the same text. The gateway puts it in the
// input document as inference.prompt_text, so that a policy can search the
// prompt as one string instead of walking it.
func PromptText(req map[string]any) string {
	var b []byte
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			if len(b) > 0 {
				b = append(b, '\n')
			}
			b = append(b, v...)
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				walk(v[k])
			}
		}
	}
	for _, f := range PromptFields {
		walk(req[f])
	}
	return string(b)
}
