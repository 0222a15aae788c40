package server

import (
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/server/common/config"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"google.golang.org/protobuf/types/known/durationpb"
)

// namespaceRetention is how long closed workflow histories are kept in a
// namespace that ferry creates. An existing namespace keeps its own setting.
const namespaceRetention = 7 * 24 * time.Hour

// memoryDSNPrefix names in-memory databases, so that a stray one is
// recognisable; the random part keeps two ephemeral servers in one process
// apart (the SQLite plugin shares connections per DSN).
const memoryDSNPrefix = "ferry-ephemeral-"

// sqlConfig returns the SQLite store for a file (mode=rwc) or, with
// path == "", a shared-cache in-memory database with a random name.
func sqlConfig(path string) *config.SQL {
	if path == "" {
		return &config.SQL{
			PluginName:        sqliteplugin.PluginName,
			DatabaseName:      memoryDSNPrefix + strconv.FormatUint(rand.Uint64(), 36),
			ConnectAttributes: map[string]string{"mode": "memory", "cache": "shared"},
		}
	}
	return &config.SQL{
		PluginName:        sqliteplugin.PluginName,
		DatabaseName:      path,
		ConnectAttributes: map[string]string{"mode": "rwc"},
	}
}

// prepareFile makes path usable as the Temporal database: its directory
// exists, the file is readable and writable, it is either new (the schema is
// set up) or already holds the Temporal schema. Anything else is an error
// naming the file.
func prepareFile(path string) error {
	if strings.ContainsAny(path, "?#") {
		return fmt.Errorf("database file %s: the path must not contain '?' or '#' (they end a SQLite file URI)", path)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("database file %s: create directory: %w", path, err)
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return setupSchema(path)
	case err != nil:
		return fmt.Errorf("database file %s: %w", path, err)
	case fi.IsDir():
		return fmt.Errorf("database file %s is a directory; give a file path such as %s", path, filepath.Join(path, "temporal.db"))
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("database file %s is not readable and writable by this user: %w", path, err)
	}
	_ = f.Close()
	if fi.Size() == 0 {
		return setupSchema(path)
	}

	tables, err := temporalTables(path)
	if err != nil {
		return err
	}
	switch {
	case tables.total == 0:
		return setupSchema(path)
	case tables.namespaces && tables.visibility:
		return nil // schema already there: nothing to do
	case tables.namespaces || tables.visibility:
		return fmt.Errorf("database file %s holds an incomplete Temporal schema (interrupted setup?); move it away and start again", path)
	default:
		return fmt.Errorf("database file %s is a SQLite database of some other program (no Temporal tables); give another --db path", path)
	}
}

type tableSet struct {
	total                  int
	namespaces, visibility bool
}

// temporalTables opens the existing file read-write (never creating it) and
// looks for the tables the schema creates first and last.
func temporalTables(path string) (tableSet, error) {
	var ts tableSet
	db, err := sql.Open("sqlite", "file:"+path+"?mode=rw")
	if err != nil {
		return ts, fmt.Errorf("database file %s: open: %w", path, err)
	}
	defer func() { _ = db.Close() }()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		return ts, dbError(path, err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return ts, dbError(path, err)
		}
		ts.total++
		switch name {
		case "namespaces":
			ts.namespaces = true
		case "executions_visibility":
			ts.visibility = true
		}
	}
	if err := rows.Err(); err != nil {
		return ts, dbError(path, err)
	}
	return ts, nil
}

func dbError(path string, err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "not a database") || strings.Contains(msg, "SQLITE_NOTADB"):
		return fmt.Errorf("database file %s is not a SQLite database: %w", path, err)
	case strings.Contains(msg, "locked") || strings.Contains(msg, "SQLITE_BUSY"):
		return fmt.Errorf("database file %s is locked by another process: %w", path, err)
	case strings.Contains(msg, "malformed") || strings.Contains(msg, "SQLITE_CORRUPT"):
		return fmt.Errorf("database file %s is damaged: %w", path, err)
	}
	return fmt.Errorf("database file %s: %w", path, err)
}

func setupSchema(path string) error {
	if err := sqliteschema.SetupSchema(sqlConfig(path)); err != nil {
		return dbError(path, fmt.Errorf("set up the Temporal schema: %w", err))
	}
	return nil
}

// createNamespace registers namespace in the store if it is not there yet
// (an existing one is left as it is).
func createNamespace(cfg *config.SQL, cluster, namespace string) error {
	ns, err := sqliteschema.NewNamespaceConfig(cluster, namespace, false, nil)
	if err != nil {
		return fmt.Errorf("namespace %q: %w", namespace, err)
	}
	ns.Detail.Config.Retention = durationpb.New(namespaceRetention)
	if err := sqliteschema.CreateNamespaces(cfg, ns); err != nil {
		if cfg.ConnectAttributes["mode"] == "memory" {
			return fmt.Errorf("create namespace %q: %w", namespace, err)
		}
		return dbError(cfg.DatabaseName, fmt.Errorf("create namespace %q: %w", namespace, err))
	}
	return nil
}
