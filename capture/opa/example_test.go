package opa_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/capture/opa"
)

// printer is a Recorder that prints what it is given.
type printer struct{}

func (printer) Record(_ context.Context, recs ...*infertrail.Record) ([]int64, error) {
	for _, r := range recs {
		fmt.Println(r.Kind, r.Actor.ID, string(r.Attributes["policy.id"]), string(r.Attributes["policy.result"]))
	}
	return make([]int64, len(recs)), nil
}

func ExampleNew() {
	rcv, err := opa.New(opa.Config{Recorder: printer{}})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	for _, p := range opa.Paths {
		mux.Handle(p, rcv) // OPA posts to <services.infertrail.url>/logs
	}

	// What OPA's decision_logs plugin uploads (here without gzip).
	req := httptest.NewRequest("POST", "/logs", strings.NewReader(`[{
		"labels": {"id": "opa-1", "version": "1.22.3"},
		"decision_id": "4423e148-85c5-41ba-8886-09abf1f2ae74",
		"path": "authz/allow",
		"input": {"user": "bob"},
		"result": false,
		"timestamp": "2026-11-26T10:00:01.004512Z"
	}]`))
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, req)
	fmt.Println(w.Code)
	// Output:
	// policy_decision opa:opa-1 "authz/allow" "deny"
	// 200
}
