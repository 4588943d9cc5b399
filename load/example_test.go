package load_test

import (
	"fmt"

	"github.com/infertrail/infertrail/load"
)

func ExampleGenerator() {
	g := load.NewGenerator(load.GenConfig{Mix: load.MixFixed, Seed: 1, ContentBytes: 2048})
	n, err := load.ContentSize(g.Next())
	fmt.Println(n, err)
	// Output: 2048 <nil>
}
