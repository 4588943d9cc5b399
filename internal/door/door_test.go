package door

import (
	"fmt"
	"sync"
	"testing"
)

func TestAgain(t *testing.T) {
	k := &Keeper{Slots: 1 << 10}
	if k.Again("a system prompt") {
		t.Fatal("first sight: seen before")
	}
	if !k.Again("a system prompt") || !k.AgainBytes([]byte("a system prompt")) {
		t.Fatal("second sight: not seen before")
	}
	if k.AgainBytes([]byte("other content")) {
		t.Fatal("other content: seen before")
	}
	// A value repeated after many others may be forgotten, never
	// misreported as new once it was seen twice in a row.
	for i := range 10_000 {
		k.Again(fmt.Sprint("unique ", i))
	}
	k.Again("a system prompt")
	if !k.Again("a system prompt") {
		t.Fatal("seen twice in a row: not recognised")
	}
}

func TestConcurrent(t *testing.T) {
	k := &Keeper{Slots: 64}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				k.Again(fmt.Sprint(g, i%100))
			}
		})
	}
	wg.Wait()
}
