// Package sql is a Directory over an SQL database: PostgreSQL (through
// github.com/jackc/pgx/v5), MySQL/MariaDB (github.com/go-sql-driver/mysql)
// or SQLite (modernc.org/sqlite: pure Go, no cgo).
//
// Three queries, each optional (a directory needs at least one):
//
//   - user_query returns at most one row; its columns are result fields
//     by name (directory.NewRecord): mailbox, home, quota_bytes,
//     quota_messages, sieve, forward, uid, gid, and Dovecot's mail and
//     quota_rule, so a dovecot-sql.conf.ext user_query ports as it is.
//     Other columns are kept in Record.Extra and warned about once.
//   - alias_query returns the alias's targets: several rows, or one
//     comma-separated value (Postfix Admin's alias.goto), or both; the
//     first column of each row counts.
//   - password_query returns the stored hash in a column named password
//     (or its only column).
//
// No row is ErrNotFound. Placeholders {address} {localpart} {domain}
// {detail} become bind parameters in the driver's style ($1 for
// PostgreSQL, ? for the others): the key's values are never part of the
// query text, so no address can inject SQL. A placeholder written inside
// quotes is refused at load. Keys that no mail system can store (a NUL
// byte, invalid UTF-8) are ErrNotFound without a query.
//
// Each directory has its own connection pool (database/sql's, bounded);
// each lookup runs under its context's deadline, connecting included, so
// a directory that is down or hangs gives an error within the timeout,
// never ErrNotFound, and the pool reconnects by itself when the server
// is back. Close waits for queries in flight, so a reload can replace a
// directory without failing lookups that already started.
package sql

import (
	"context"
	dbsql "database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/lmtpd/lmtpd/directory"
	"github.com/rs/zerolog"

	"github.com/go-sql-driver/mysql"   // registers "mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	_ "modernc.org/sqlite"             // registers "sqlite"
)

// Drivers, as sql_driver names them.
const (
	DriverPostgres = "postgres"
	DriverMySQL    = "mysql"
	DriverSQLite   = "sqlite"
)

// Pool defaults.
const (
	DefaultMaxOpenConns    = 8
	DefaultMaxIdleConns    = 4
	DefaultConnMaxIdleTime = 5 * time.Minute
	DefaultConnMaxLifetime = time.Hour
)

// Options configures an SQL directory.
type Options struct {
	// Name is the directory's name, for logs and errors.
	Name string
	// Driver is "postgres", "mysql" or "sqlite".
	Driver string
	// DSN is the driver's data source name: a libpq keyword string or
	// URL for PostgreSQL ("host=/run/postgresql dbname=mail user=lmtpd"),
	// go-sql-driver's form for MySQL ("lmtpd:pw@unix(/run/mysqld/mysqld.sock)/mail"),
	// a file name or file: URI for SQLite.
	DSN string
	// UserQuery, AliasQuery and PasswordQuery are the queries; "" means
	// the directory does not answer that kind (ErrNotFound).
	UserQuery, AliasQuery, PasswordQuery string
	// Timeout bounds each lookup, connecting included, when the caller's
	// context has no sooner deadline; 0 means directory.DefaultTimeout.
	// (The Cache wrapper applies the configured timeout as well; this
	// one keeps a Dir used on its own from hanging.)
	Timeout time.Duration
	// MaxOpenConns bounds the pool; 0 means DefaultMaxOpenConns.
	MaxOpenConns int
	// MaxIdleConns is how many idle connections stay open; 0 means
	// DefaultMaxIdleConns.
	MaxIdleConns int
	// ConnMaxIdleTime and ConnMaxLifetime retire connections; 0 means
	// the defaults above.
	ConnMaxIdleTime, ConnMaxLifetime time.Duration
	// Log receives warnings about unknown result columns. The zero
	// Logger logs nothing.
	Log zerolog.Logger
}

// Dir is an SQL Directory. It is safe for concurrent use.
type Dir struct {
	o                  Options
	db                 *dbsql.DB
	user, alias, passw query
	warn               *directory.FieldWarner
}

var _ directory.Directory = (*Dir)(nil)

// New checks the options, compiles the queries and opens the pool. It
// does not connect: Check does, and lookups do when they need to.
func New(o Options) (*Dir, error) {
	var driverName string
	var st style
	switch o.Driver {
	case DriverPostgres:
		driverName, st = "pgx", styleDollar
	case DriverMySQL:
		driverName, st = "mysql", styleQuestion
		mysqlLogOnce.Do(func() { mysql.SetLogger(mysqlLog{o.Log}) })
	case DriverSQLite:
		driverName, st = "sqlite", styleQuestion
	default:
		return nil, fmt.Errorf("sql_driver %q: want %q, %q or %q", o.Driver, DriverPostgres, DriverMySQL, DriverSQLite)
	}
	if o.DSN == "" {
		return nil, errors.New("dsn is empty")
	}
	if o.UserQuery == "" && o.AliasQuery == "" && o.PasswordQuery == "" {
		return nil, errors.New("none of user_query, alias_query, password_query is set")
	}
	d := &Dir{o: o, warn: &directory.FieldWarner{Log: o.Log, Directory: o.Name}}
	for _, q := range []struct {
		name, src string
		dst       *query
	}{{"user_query", o.UserQuery, &d.user}, {"alias_query", o.AliasQuery, &d.alias}, {"password_query", o.PasswordQuery, &d.passw}} {
		if q.src == "" {
			continue
		}
		c, err := compile(q.src, st)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", q.name, err)
		}
		*q.dst = c
	}
	db, err := dbsql.Open(driverName, o.DSN)
	if err != nil {
		return nil, fmt.Errorf("dsn: %w", err)
	}
	db.SetMaxOpenConns(orDefault(o.MaxOpenConns, DefaultMaxOpenConns))
	db.SetMaxIdleConns(orDefault(o.MaxIdleConns, DefaultMaxIdleConns))
	db.SetConnMaxIdleTime(orDefault(o.ConnMaxIdleTime, DefaultConnMaxIdleTime))
	db.SetConnMaxLifetime(orDefault(o.ConnMaxLifetime, DefaultConnMaxLifetime))
	d.db = db
	return d, nil
}

// mysqlLogOnce routes go-sql-driver/mysql's own messages (a process-wide
// setting) to the first MySQL directory's logger instead of stderr. They
// repeat what the returned errors say, so they go at debug level.
var mysqlLogOnce sync.Once

type mysqlLog struct{ l zerolog.Logger }

func (m mysqlLog) Print(v ...any) { m.l.Debug().Str("driver", "mysql").Msg(fmt.Sprint(v...)) }

func orDefault[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// Name returns the directory's name.
func (d *Dir) Name() string { return d.o.Name }

// Stats returns the pool's statistics (open and in-use connections,
// waits), for metrics.
func (d *Dir) Stats() dbsql.DBStats { return d.db.Stats() }

// storable reports whether k could be stored in any of the databases:
// PostgreSQL rejects NUL and invalid UTF-8 in text with an error, which
// would turn a hostile address into a temporary failure instead of "no
// such user".
func storable(k directory.Key) bool {
	for _, s := range []string{k.Address, k.LocalPart, k.Domain, k.Detail} {
		if strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s) {
			return false
		}
	}
	return true
}

// rows runs q for k and returns each row's columns by name, as strings
// ("" for NULL). limit > 0 stops after that many rows.
func (d *Dir) rows(ctx context.Context, what string, q query, k directory.Key, limit int) ([]string, [][]string, error) {
	ctx, cancel := context.WithTimeout(ctx, orDefault(d.o.Timeout, directory.DefaultTimeout))
	defer cancel()
	rows, err := d.db.QueryContext(ctx, q.text, q.bind(k)...)
	if err != nil {
		return nil, nil, d.fail(ctx, what, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, nil, d.fail(ctx, what, err)
	}
	var out [][]string
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, nil, d.fail(ctx, what, err)
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			row[i] = text(v)
		}
		out = append(out, row)
		if limit > 0 && len(out) == limit {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, d.fail(ctx, what, err)
	}
	if err := rows.Close(); err != nil {
		return nil, nil, d.fail(ctx, what, err)
	}
	return cols, out, nil
}

// text renders a scanned column value.
func text(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case []byte:
		return string(v)
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		if v {
			return "1"
		}
		return "0"
	case time.Time:
		return v.Format(time.RFC3339Nano)
	}
	return fmt.Sprint(v)
}

// fail wraps a database error; it is never ErrNotFound.
func (d *Dir) fail(ctx context.Context, what string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		err = fmt.Errorf("%w (%v)", ctxErr, err)
	}
	return fmt.Errorf("sql %s (%s): %s: %w", d.o.Name, d.o.Driver, what, err)
}

// LookupUser runs user_query and maps the first row's columns by name.
func (d *Dir) LookupUser(ctx context.Context, k directory.Key) (directory.Record, error) {
	if d.user.text == "" || !storable(k) {
		return directory.Record{}, directory.ErrNotFound
	}
	cols, rows, err := d.rows(ctx, "user_query", d.user, k, 1)
	if err != nil {
		return directory.Record{}, err
	}
	if len(rows) == 0 {
		return directory.Record{}, directory.ErrNotFound
	}
	fields := make(map[string]string, len(cols))
	for i, c := range cols {
		fields[c] = rows[0][i]
	}
	r, unknown, err := directory.NewRecord(k, fields)
	d.warn.Warn(unknown)
	if err != nil {
		return directory.Record{}, fmt.Errorf("sql %s: user_query for %s: %w", d.o.Name, k.Address, err)
	}
	return r, nil
}

// LookupAlias runs alias_query and splits the first column of its rows.
func (d *Dir) LookupAlias(ctx context.Context, k directory.Key) ([]string, error) {
	if d.alias.text == "" || !storable(k) {
		return nil, directory.ErrNotFound
	}
	_, rows, err := d.rows(ctx, "alias_query", d.alias, k, 0)
	if err != nil {
		return nil, err
	}
	vals := make([]string, 0, len(rows))
	for _, r := range rows {
		if len(r) > 0 {
			vals = append(vals, r[0])
		}
	}
	targets := directory.SplitAliasTargets(vals)
	if len(targets) == 0 {
		return nil, directory.ErrNotFound
	}
	return targets, nil
}

// LookupPassword runs password_query and returns its password column (or
// its only column). NULL or empty is ErrNotFound: no login.
func (d *Dir) LookupPassword(ctx context.Context, k directory.Key) (string, error) {
	if d.passw.text == "" || !storable(k) {
		return "", directory.ErrNotFound
	}
	cols, rows, err := d.rows(ctx, "password_query", d.passw, k, 1)
	if err != nil {
		return "", err
	}
	if len(rows) == 0 {
		return "", directory.ErrNotFound
	}
	col := -1
	for i, c := range cols {
		if strings.EqualFold(c, directory.FieldNamePassword) {
			col = i
		}
	}
	if col < 0 {
		if len(cols) != 1 {
			return "", fmt.Errorf("sql %s: password_query returns %d columns and none is named password", d.o.Name, len(cols))
		}
		col = 0
	}
	if p := rows[0][col]; p != "" {
		return p, nil
	}
	return "", directory.ErrNotFound
}

// Check connects and has the server prepare each query, so a syntax
// error, a missing table or a wrong column in a condition shows at
// check-config rather than at the first delivery.
func (d *Dir) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, orDefault(d.o.Timeout, directory.DefaultTimeout))
	defer cancel()
	if err := d.db.PingContext(ctx); err != nil {
		return d.fail(ctx, "connect", err)
	}
	for _, q := range []struct {
		name string
		q    query
	}{{"user_query", d.user}, {"alias_query", d.alias}, {"password_query", d.passw}} {
		if q.q.text == "" {
			continue
		}
		st, err := d.db.PrepareContext(ctx, q.q.text)
		if err != nil {
			return d.fail(ctx, q.name, err)
		}
		st.Close()
	}
	return nil
}

// Close closes the pool after the queries in flight finish.
func (d *Dir) Close() error { return d.db.Close() }
