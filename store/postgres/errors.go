package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// fail wraps err with op and the conv error kind it amounts to. The cause
// stays in the chain (errors.As finds the *pgconn.PgError), so Store.Tx can
// still recognise a serialization failure inside a wrapped error.
func fail(op string, err error) error {
	if err == nil {
		return nil
	}
	if kind := kindOf(err); kind != nil && !errors.Is(err, kind) {
		return fmt.Errorf("%s: %w: %w", op, kind, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// kindOf maps a pgx error to a conv error kind, or nil when none fits (a
// bug, such as a scan into the wrong type, is not any of them).
func kindOf(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return conv.ErrNotFound
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505": // unique_violation
			return conv.ErrConflict
		case pgErr.Code == "23503": // foreign_key_violation: what it names does not exist for this tenant
			return conv.ErrNotFound
		case pgErr.Code == "P0002": // no_data_found: raised by plpgsql's STRICT (ingest_envelope of the previous release)
			return conv.ErrNotFound
		case retryable(err):
			return conv.ErrUnavailable
		case strings.HasPrefix(pgErr.Code, "22"), pgErr.Code == "23502", pgErr.Code == "23514":
			return conv.ErrInvalid // data exception, not null, check
		case strings.HasPrefix(pgErr.Code, "08"), strings.HasPrefix(pgErr.Code, "53"),
			strings.HasPrefix(pgErr.Code, "57P"):
			// connection exception, insufficient resources, operator
			// intervention (shutdown, cannot connect now)
			return conv.ErrUnavailable
		}
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil // the caller's own doing; the ctx error stays in the chain
	}
	if connectionError(err) {
		return conv.ErrUnavailable
	}
	return nil
}

// connectionError reports errors of reaching the server rather than of the
// statement.
func connectionError(err error) bool {
	var (
		connectErr *pgconn.ConnectError
		netErr     net.Error
	)
	return errors.As(err, &connectErr) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || pgconn.SafeToRetry(err) || pgconn.Timeout(err)
}

// retryable reports a failure the database resolves by running the whole
// transaction again: a serialization failure or a deadlock.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}
