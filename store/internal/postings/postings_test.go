package postings

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/infertrail/infertrail"
)

// TestSources: term postings grouped by data key and record, in (key, seq)
// order, each group's keys in order; leaf postings (no data key) left out.
func TestSources(t *testing.T) {
	k1, k2 := infertrail.KeyID{1}, infertrail.KeyID{2}
	ps := Sort([]infertrail.Posting{
		{Key: "term=b", Seq: 5, DataKey: k2}, {Key: "model=m", Seq: 5},
		{Key: "term=a", Seq: 5, DataKey: k2}, {Key: "term=a", Seq: 3, DataKey: k1},
		{Key: "term=c", Seq: 3, DataKey: k1}, {Key: "term=a", Seq: 4, DataKey: k1},
		{Key: "term=a", Seq: 3, DataKey: k1}, // a repeat
	})
	got := Sources(ps)
	want := []Source{
		{Key: k1, Seq: 3, Keys: []string{"term=a", "term=c"}},
		{Key: k1, Seq: 4, Keys: []string{"term=a"}},
		{Key: k2, Seq: 5, Keys: []string{"term=a", "term=b"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Sources =\n%v\nwant\n%v", got, want)
	}
	if got := Sources([]infertrail.Posting{{Key: "model=m", Seq: 1}}); len(got) != 0 {
		t.Errorf("Sources of leaf postings = %v, want none", got)
	}
}

// TestCheck names the posting and the field at fault.
func TestCheck(t *testing.T) {
	for _, c := range []struct {
		ps   []infertrail.Posting
		want string
	}{
		{[]infertrail.Posting{{Key: "a=1", Seq: 0}, {Key: "", Seq: 1}}, "posting 1: field key"},
		{[]infertrail.Posting{{Key: strings.Repeat("k", infertrail.MaxIndexKey+1), Seq: 1}}, "posting 0: field key"},
		{[]infertrail.Posting{{Key: "a=1", Seq: -1}}, "posting 0: field seq"},
	} {
		err := Check(c.ps)
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, infertrail.ErrInvalid) {
			t.Errorf("Check = %v, want an ErrInvalid naming %q", err, c.want)
		}
	}
	if err := Check([]infertrail.Posting{{Key: "a=1", Seq: 0}}); err != nil {
		t.Errorf("Check of a good posting: %v", err)
	}
}
