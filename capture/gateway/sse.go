package gateway

import "bytes"

// SSEParser splits a server-sent event stream into events as its bytes
// arrive, following the WHATWG event-stream grammar: lines end in CRLF, LF
// or CR; "event:" names an event, "data:" lines are joined by "\n", a line
// starting with ":" is a comment, and a blank line dispatches the event.
// An event whose data passes max bytes is dropped and counted in dropped;
// emit then gets its name with nil data, so that a reconstructor still
// learns that, say, a stream's terminal event arrived.
type SSEParser struct {
	emit    func(name string, data []byte)
	max     int
	line    []byte // a line not yet ended
	name    []byte
	data    []byte
	hasData bool
	tooBig  bool
	skipLF  bool // the last byte was CR: a following LF belongs to it
	dropped int
}

func NewSSEParser(max int, emit func(name string, data []byte)) *SSEParser {
	return &SSEParser{emit: emit, max: max}
}

// feed parses b, emitting every event it completes.
func (p *SSEParser) Feed(b []byte) {
	for len(b) > 0 {
		if p.skipLF {
			p.skipLF = false
			if b[0] == '\n' {
				b = b[1:]
				continue
			}
		}
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			if len(p.line)+len(b) > p.max+16 {
				p.tooBig = true // keep parsing lines, but not this one's bytes
				p.line = p.line[:0]
			} else {
				p.line = append(p.line, b...)
			}
			return
		}
		if b[i] == '\r' {
			p.skipLF = true
		}
		if len(p.line) > 0 {
			p.line = append(p.line, b[:i]...)
			p.processLine(p.line)
			p.line = p.line[:0]
		} else {
			p.processLine(b[:i])
		}
		b = b[i+1:]
	}
}

func (p *SSEParser) processLine(l []byte) {
	if len(l) == 0 {
		p.dispatch()
		return
	}
	if l[0] == ':' {
		return
	}
	field, value := l, []byte(nil)
	if i := bytes.IndexByte(l, ':'); i >= 0 {
		field, value = l[:i], l[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(field) {
	case "event":
		p.name = append(p.name[:0], value...)
	case "data":
		if p.hasData {
			p.data = append(p.data, '\n')
		}
		p.hasData = true
		if len(p.data)+len(value) > p.max {
			p.tooBig = true
			return
		}
		p.data = append(p.data, value...)
	}
}

func (p *SSEParser) dispatch() {
	if p.tooBig {
		p.dropped++
		p.emit(string(p.name), nil)
	} else if p.hasData {
		p.emit(string(p.name), p.data)
	}
	p.name, p.data, p.hasData, p.tooBig = p.name[:0], p.data[:0], false, false
}
