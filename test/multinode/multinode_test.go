package multinode_test

import (
	"testing"
	"time"
)

// TestThreeNodes has three nodes, sharing one key pair, append to one log in
// PostgreSQL at once: the log must come out gap-free, with every
// acknowledged record at its acknowledged seq, and verify must pass.
func TestThreeNodes(t *testing.T) {
	dsn := freshSchema(t, sharedDSN(t))
	nodes := startNodes(t, dsn, 3)

	d := ingestDuration()
	a := newAcks(t, dsn)
	stop := make(chan struct{})
	time.AfterFunc(d, func() { close(stop) })
	start := time.Now()
	drive(t.Context(), t, nodes, 4, 50, a, stop)
	elapsed := time.Since(start)
	for _, n := range nodes {
		c := a.nodeCount(n.name)
		t.Logf("%s: %d records acknowledged, %.0f records/s", n.name, c, float64(c)/elapsed.Seconds())
	}
	total := a.count()
	t.Logf("total: %d records in %s, %.0f records/s", total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds())
	if total == 0 {
		t.Fatal("nothing was acknowledged")
	}
	for _, n := range nodes {
		n.stop(t)
	}
	if got, want := verifyLog(t, nodes[0].dir, dsn), a.logged(); got != want {
		t.Errorf("verify checked %d records; want %d (%d acknowledged, %d there before)", got, want, total, a.base)
	}
	checkStored(t, dsn, a)
}

// TestKillNodeMidIngest kills one of two nodes with SIGKILL while both
// ingest: the other keeps appending, the killed one comes back, and
// afterwards every acknowledged record is in the log exactly once.
func TestKillNodeMidIngest(t *testing.T) {
	dsn := freshSchema(t, sharedDSN(t))
	nodes := startNodes(t, dsn, 2)
	survivor, victim := nodes[0], nodes[1]

	a := newAcks(t, dsn)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		drive(t.Context(), t, nodes, 4, 50, a, stop)
	}()
	time.Sleep(4 * time.Second)
	victim.kill(t)
	killedAt := a.nodeCount(survivor.name)
	t.Logf("killed %s with %d records acknowledged in all", victim.name, a.count())
	time.Sleep(3 * time.Second)
	if got := a.nodeCount(survivor.name); got <= killedAt {
		t.Errorf("%s acknowledged nothing while %s was down (%d before, %d after)", survivor.name, victim.name, killedAt, got)
	}
	victim.start(t)
	restartedAt := a.nodeCount(victim.name)
	time.Sleep(4 * time.Second)
	close(stop)
	<-done
	if got := a.nodeCount(victim.name); got <= restartedAt {
		t.Errorf("%s acknowledged nothing after its restart", victim.name)
	}
	t.Logf("%d records acknowledged; %d connection errors while %s was down", a.count(), a.connErrors.Load(), victim.name)

	start := time.Now()
	resendAll(t.Context(), t, nodes, a)
	t.Logf("resent %d records in %s: all duplicates at their seq", a.count(), time.Since(start).Round(time.Millisecond))
	for _, n := range nodes {
		n.stop(t)
	}
	checkStored(t, dsn, a)
	if got, want := verifyLog(t, survivor.dir, dsn), a.logged(); got != want {
		t.Errorf("verify checked %d records; want %d (%d acknowledged, %d there before)", got, want, a.count(), a.base)
	}
}

// TestPostgresRestartMidIngest crashes a private PostgreSQL under a node
// that is ingesting: while the database is down ingest answers 503 with
// Retry-After; once it is back the node recovers by itself, and the log
// holds every acknowledged record exactly once.
func TestPostgresRestartMidIngest(t *testing.T) {
	pg := startPrivatePostgres(t)
	dsn := freshSchema(t, pg.dsn)
	nodes := startNodes(t, dsn, 1)

	a := newAcks(t, dsn)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		drive(t.Context(), t, nodes, 4, 50, a, stop)
	}()
	time.Sleep(3 * time.Second)
	before := a.count()
	pg.ctl(t, "stop", "-m", "immediate")
	t.Logf("PostgreSQL crashed with %d records acknowledged", before)
	time.Sleep(3 * time.Second)
	down := a.unavailable.Load()
	pg.ctl(t, "start", "-w", "-t", "60", "-l", pg.logFile, "-o", pg.opts)
	upAt := a.count()
	t.Logf("PostgreSQL back; %d answers were 503 while it was down", down)
	time.Sleep(4 * time.Second)
	close(stop)
	<-done

	if down == 0 {
		t.Error("no ingest request was answered 503 while PostgreSQL was down")
	}
	if n := a.other503.Load(); n > 0 {
		t.Errorf("%d 503 answers lacked Retry-After or the code \"unavailable\"", n)
	}
	if got := a.count(); got <= upAt {
		t.Errorf("no record acknowledged after PostgreSQL came back (%d before, %d after)", upAt, got)
	}
	t.Logf("%d records acknowledged in all", a.count())
	nodes[0].stop(t)
	checkStored(t, dsn, a)
	if got, want := verifyLog(t, nodes[0].dir, dsn), a.logged(); got != want {
		t.Errorf("verify checked %d records; want %d (%d acknowledged, %d there before)", got, want, a.count(), a.base)
	}
}

// startNodes starts n nodes on dsn: the first creates the keys, and the
// admin token (the token store being empty), the others get copies of the
// keys. With the admin token it creates one API token for every tenant,
// able to ingest and read, which every node's clients send.
func startNodes(t testing.TB, dsn string, n int) []*node {
	t.Helper()
	nodes := make([]*node, n)
	var token string
	for i := range nodes {
		nodes[i] = newNode(t, "node"+string(rune('1'+i)), dsn)
		if i > 0 {
			shareKeys(t, nodes[0], nodes[i])
		}
		nodes[i].start(t)
		if i == 0 {
			token = createToken(t, nodes[0], adminToken(t, nodes[0]), "multinode clients", "ingest", "auditor").Token
		}
		nodes[i].token = token
	}
	return nodes
}
