package export

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"time"
)

//go:embed report.html.tmpl
var reportHTML string

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"num":   fmtNum,
	"share": fmtShare,
	"secs":  fmtSecs,
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "none"
		}
		return t.UTC().Format(time.RFC3339)
	},
	"day": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04") },
	"sectionTitle": func(s string) string {
		if t, ok := sectionTitles[s]; ok {
			return t
		}
		return s
	},
	"status": statusLabel,
	"len64":  func(n int) int64 { return int64(n) },
	"sub": func(a int64, bs ...int64) int64 {
		for _, b := range bs {
			a -= b
		}
		return a
	},
	"pct": func(n, total int64) string {
		if total == 0 {
			return "0%"
		}
		return fmtShare(float64(n) / float64(total))
	},
	"barWidth": func(n, maxN int64) int64 {
		if maxN == 0 {
			return 0
		}
		return n * 100 / maxN
	},
	"maxBucket": func(bs []Bucket) int64 {
		var m int64
		for _, b := range bs {
			m = max(m, b.Records)
		}
		return m
	},
}).Parse(reportHTML))

// statusLabel is a status in words, for people and screen readers alike.
func statusLabel(s string) string {
	switch s {
	case StatusOK:
		return "OK"
	case StatusAttention:
		return "Needs attention"
	case StatusNoData:
		return "No data"
	case StatusUnavailable:
		return "Not available"
	}
	return s
}

// reportView is what the HTML template renders.
type reportView struct {
	*Report
	SectionList []sectionView
}

type sectionView struct {
	Name, Title, Status string
	Notes               []string
}

// WriteHTML writes the report as one self-contained HTML page: no script,
// no external resource.
func (r *Report) WriteHTML(w io.Writer) error {
	v := reportView{Report: r}
	for _, name := range sectionNames {
		s := r.section(name)
		v.SectionList = append(v.SectionList, sectionView{Name: name, Title: sectionTitles[name], Status: s.Status, Notes: s.Notes})
	}
	if err := reportTemplate.Execute(w, v); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// WriteJSON writes the report as indented JSON (docs/report.md).
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
