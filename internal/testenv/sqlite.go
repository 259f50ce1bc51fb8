package testenv

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/secret"
	"github.com/switchboard-hq/switchboard/store/sqlite"
)

// SQLiteStore opens a store on a fresh SQLite file in a temporary
// directory, its secrets sealed under a fresh master key file (the
// SWITCHBOARD_MASTER_KEY variable cleared for the test), with the id
// generator of node 1. The store is closed when the test ends.
func SQLiteStore(tb testing.TB) (*sqlite.Store, *conv.IDGen) {
	tb.Helper()
	tb.Setenv(secret.EnvVar, "")
	keys, _, err := secret.Load(filepath.Join(tb.TempDir(), "master.key"), true)
	if err != nil {
		tb.Fatal(err)
	}
	ids, err := conv.NewIDGen(1)
	if err != nil {
		tb.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(tb.TempDir(), "sb.db"), Sealer: keys, IDs: ids})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st, ids
}
