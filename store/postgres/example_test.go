package postgres_test

import (
	"context"
	"log"

	"github.com/infertrail/infertrail/store/postgres"
)

func ExampleOpen() {
	ctx := context.Background()
	db, err := postgres.Open(ctx, "postgres://infertrail@db.internal:5432/audit", postgres.Config{
		Schema:   "infertrail",
		MaxConns: 16,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	size, err := db.TreeSize(ctx)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("log of %d records", size)
}

func ExampleMigrate() {
	// The schema comes from the DSN's search_path; run this once per
	// release, then start the nodes with Config.SkipMigrate.
	if err := postgres.Migrate(context.Background(), "postgres://infertrail@db.internal:5432/audit?search_path=infertrail"); err != nil {
		log.Fatal(err)
	}
}
