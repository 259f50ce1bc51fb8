package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Planner statistics for young tables.
//
// A table that has never been analyzed gives the planner nothing to tell
// indexes apart: while it is nearly empty, the primary key (tenant_id, id)
// looks as good as the index that matches every column of a lookup, and a
// session's cached generic plan (pgx prepares statements; PL/pgSQL caches
// its statements' plans) may pick it. That plan is kept until the table's
// statistics change, and autovacuum analyzes a new table only after its
// naptime: meanwhile every dedup lookup of ingest_envelope read the
// tenant's whole messages index (200M index tuples in one 40,000-envelope
// run) and ingest fell from ~7,000 to ~600 envelopes a second.
//
// KeepStats analyzes the hot tables itself while they are young — never
// analyzed and already holding rows, or grown tenfold since they were last
// analyzed — which invalidates those cached plans. Once autovacuum has
// analyzed a table at its size it has nothing to do.

// hotTables are the tables ingest and the console look up by index on
// every message.
var hotTables = []string{"messages", "conversations", "contacts", "identities", "thread_keys"}

// statsCheck selects the hot tables whose statistics are missing or far
// behind their size.
const statsCheck = `SELECT relname FROM pg_stat_user_tables
	WHERE schemaname = current_schema() AND relname = ANY($1)
	AND n_live_tup >= 100
	AND ((last_analyze IS NULL AND last_autoanalyze IS NULL) OR n_mod_since_analyze > 10 * GREATEST(n_live_tup - n_mod_since_analyze, 100))`

// KeepStats runs until ctx ends, checking every interval.
func (s *Store) KeepStats(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := s.analyzeYoung(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("postgres: analyzing young tables", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// analyzeYoung analyzes the hot tables whose statistics are missing or
// stale, and reports which it did.
func (s *Store) analyzeYoung(ctx context.Context) error {
	rows, err := s.pool.Query(ctx, statsCheck, hotTables)
	if err != nil {
		return err
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, tbl := range tables {
		if _, err := s.pool.Exec(ctx, `ANALYZE `+pgx.Identifier{tbl}.Sanitize()); err != nil {
			return err
		}
		s.log.Debug("postgres: analyzed a young table", "table", tbl)
	}
	return nil
}
