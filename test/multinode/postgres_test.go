package multinode_test

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"
)

// privatePostgres is a PostgreSQL cluster of the test's own, which it may
// crash without disturbing the shared server.
type privatePostgres struct {
	bin     string // the directory of initdb and pg_ctl
	dir     string // holds data/, the socket and the log
	data    string
	logFile string
	opts    string // postgres options for pg_ctl -o
	dsn     string
}

// startPrivatePostgres creates and starts a cluster as the postgres user,
// stopped and removed at cleanup. It skips (or fails, with
// INFERTRAIL_REQUIRE_POSTGRES=1) where that is not possible.
func startPrivatePostgres(t testing.TB) *privatePostgres {
	t.Helper()
	if os.Getenv("INFERTRAIL_TEST_POSTGRES") == "" {
		requirePostgres(t, "INFERTRAIL_TEST_POSTGRES is not set (the PostgreSQL tests are opt-in)")
	}
	if os.Geteuid() != 0 {
		requirePostgres(t, "a private PostgreSQL cluster needs root (to run it as the postgres user)")
	}
	versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(versions) == 0 {
		requirePostgres(t, "no PostgreSQL server binaries under /usr/lib/postgresql")
	}
	sort.Slice(versions, func(i, j int) bool { return pgVersion(versions[i]) > pgVersion(versions[j]) })
	if _, err := exec.LookPath("runuser"); err != nil {
		requirePostgres(t, "runuser is not installed")
	}
	pgUser, err := user.Lookup("postgres")
	if err != nil {
		requirePostgres(t, "no postgres user: "+err.Error())
	}
	uid, _ := strconv.Atoi(pgUser.Uid)
	gid, _ := strconv.Atoi(pgUser.Gid)

	// Not t.TempDir: its parents are 0700 root, which postgres cannot enter.
	dir, err := os.MkdirTemp("", "infertrail-pg-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	port := freePort(t)
	pg := &privatePostgres{
		bin:     filepath.Dir(versions[0]),
		dir:     dir,
		data:    filepath.Join(dir, "data"),
		logFile: filepath.Join(dir, "postgres.log"),
		opts:    fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", port, dir),
		dsn:     fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=2", port),
	}
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(pg.data, "postmaster.pid")); err == nil {
			pg.run("stop", "-m", "immediate", "-w", "-t", "30")
		}
		if t.Failed() {
			if b, err := os.ReadFile(pg.logFile); err == nil {
				t.Logf("private PostgreSQL log (last 4 KiB):\n%s", tail(b, 4<<10))
			}
		}
		os.RemoveAll(dir)
	})
	out, err := pg.exec("initdb", "-D", pg.data, "-A", "trust", "-U", "postgres", "--no-sync")
	if err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	pg.ctl(t, "start", "-w", "-t", "60", "-l", pg.logFile, "-o", pg.opts)
	return pg
}

func pgVersion(pgCtl string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(pgCtl))))
	return v
}

// exec runs one of the cluster's programs as the postgres user, bounded
// to 2 minutes.
func (pg *privatePostgres) exec(program string, args ...string) ([]byte, error) {
	cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(pg.bin, program)}, args...)...)
	cmd.WaitDelay = time.Second
	timer := time.AfterFunc(2*time.Minute, func() {
		if cmd.Process != nil {
			cmd.Process.Kill()
		}
	})
	defer timer.Stop()
	return cmd.CombinedOutput()
}

// run runs pg_ctl ACTION -D data args….
func (pg *privatePostgres) run(action string, args ...string) ([]byte, error) {
	return pg.exec("pg_ctl", append([]string{action, "-D", pg.data}, args...)...)
}

// ctl runs pg_ctl and fails the test if it fails.
func (pg *privatePostgres) ctl(t testing.TB, action string, args ...string) {
	t.Helper()
	start := time.Now()
	if out, err := pg.run(action, args...); err != nil {
		t.Fatalf("pg_ctl %s: %v\n%s", action, err, out)
	}
	t.Logf("pg_ctl %s %v: %s", action, args, time.Since(start).Round(time.Millisecond))
}
