package sqlite

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"modernc.org/libc"
	"modernc.org/libc/sys/types"
	lib "modernc.org/sqlite/lib"
)

// rawConn is a connection opened through SQLite's C API (modernc.org/sqlite/lib) rather than
// database/sql. The writer's fast path runs on it because modernc.org/sqlite's driver compiles a
// statement on every execution (its prepared statements keep only the text) and allocates C
// memory for every bound string; here each statement is compiled once and kept, and bound
// strings are copied into one reused buffer. A rawConn belongs to one goroutine.
//
// It is kept because it pays for its unsafe code: bench/store (64 callers, 20,000 tasks,
// median of 3 interleaved runs) measured the same batched path through database/sql, with
// every statement prepared once on the writer's connection, at 454 CreateTask/s and 184 µs of
// CPU per call against 1,482/s and 100 µs here, and 537 UpdateTask/s, 173 µs against
// 2,684/s, 73 µs.
type rawConn struct {
	tls   *libc.TLS
	db    uintptr
	stmts map[string]uintptr // compiled statements by text
	out   uintptr            // C memory for one out-parameter pointer
	mem   uintptr            // C memory holding the bound strings of the running statement
	size  int                // bytes at mem
}

// openRaw opens the existing database at path for writing with the writer's settings. The
// journal mode is WAL already: it is a property of the file, set when Open first connected.
func openRaw(path string, busy time.Duration) (_ *rawConn, err error) {
	c := &rawConn{tls: libc.NewTLS(), stmts: make(map[string]uintptr)}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	if c.out = libc.Xmalloc(c.tls, types.Size_t(unsafe.Sizeof(uintptr(0)))); c.out == 0 {
		return nil, errors.New("out of memory")
	}
	name, err := libc.CString(path)
	if err != nil {
		return nil, err
	}
	rc := lib.Xsqlite3_open_v2(c.tls, name, c.out, lib.SQLITE_OPEN_READWRITE|lib.SQLITE_OPEN_FULLMUTEX, 0)
	libc.Xfree(c.tls, name)
	c.db = *(*uintptr)(cptr(c.out))
	if rc != lib.SQLITE_OK {
		return nil, c.err(rc)
	}
	lib.Xsqlite3_extended_result_codes(c.tls, c.db, 1)
	if rc := lib.Xsqlite3_busy_timeout(c.tls, c.db, int32(busy.Milliseconds())); rc != lib.SQLITE_OK {
		return nil, c.err(rc)
	}
	for _, p := range []string{
		"PRAGMA synchronous = FULL",
		"PRAGMA foreign_keys = 1",
		fmt.Sprintf("PRAGMA cache_size = %d", writerCacheKiB),
	} {
		if _, err := c.exec(p); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	// Read back what durability rests on: a typo above would otherwise go unnoticed.
	var mode string
	var sync int64
	if err := c.query("SELECT journal_mode, synchronous FROM pragma_journal_mode, pragma_synchronous", nil, func(r rawRow) error {
		mode, sync = r.text(0), r.int64(1)
		return nil
	}); err != nil {
		return nil, err
	}
	if mode != "wal" || sync != 2 {
		return nil, fmt.Errorf("journal mode %q, synchronous %d; want wal and 2 (FULL)", mode, sync)
	}
	return c, nil
}

func (c *rawConn) close() {
	for _, st := range c.stmts {
		lib.Xsqlite3_finalize(c.tls, st)
	}
	clear(c.stmts)
	if c.db != 0 {
		lib.Xsqlite3_close_v2(c.tls, c.db)
		c.db = 0
	}
	for _, p := range []*uintptr{&c.mem, &c.out} {
		if *p != 0 {
			libc.Xfree(c.tls, *p)
			*p = 0
		}
	}
	c.size = 0
	if c.tls != nil {
		c.tls.Close()
		c.tls = nil
	}
}

// err describes the connection's last error.
func (c *rawConn) err(rc int32) error {
	msg := libc.GoString(lib.Xsqlite3_errstr(c.tls, rc))
	if c.db != 0 {
		msg = libc.GoString(lib.Xsqlite3_errmsg(c.tls, c.db))
	}
	return fmt.Errorf("%s (%d)", msg, rc)
}

// prepare returns the compiled statement for query, compiling it on first use.
func (c *rawConn) prepare(query string) (uintptr, error) {
	if st, ok := c.stmts[query]; ok {
		return st, nil
	}
	z, err := libc.CString(query)
	if err != nil {
		return 0, err
	}
	defer libc.Xfree(c.tls, z)
	if rc := lib.Xsqlite3_prepare_v3(c.tls, c.db, z, -1, lib.SQLITE_PREPARE_PERSISTENT, c.out, 0); rc != lib.SQLITE_OK {
		return 0, c.err(rc)
	}
	st := *(*uintptr)(cptr(c.out))
	if st == 0 {
		return 0, fmt.Errorf("%q is not a statement", query)
	}
	c.stmts[query] = st
	return st, nil
}

// bind binds args (nil, string, []byte, int, int64) to st. Strings and byte slices are copied
// into c.mem and bound without a copy of SQLite's own, so c.mem must not change until the
// statement has run.
func (c *rawConn) bind(st uintptr, args []any) error {
	need := 0
	for _, a := range args {
		switch v := a.(type) {
		case string:
			need += len(v)
		case []byte:
			need += len(v)
		}
	}
	if need > c.size {
		size := max(need, 2*c.size, 64<<10)
		p := libc.Xmalloc(c.tls, types.Size_t(size))
		if p == 0 {
			return fmt.Errorf("out of memory binding %d bytes", need)
		}
		if c.mem != 0 {
			libc.Xfree(c.tls, c.mem)
		}
		c.mem, c.size = p, size
	}
	buf := unsafe.Slice((*byte)(cptr(c.mem)), c.size)
	off := 0
	for i, a := range args {
		idx := int32(i + 1)
		var rc int32
		switch v := a.(type) {
		case nil:
			rc = lib.Xsqlite3_bind_null(c.tls, st, idx)
		case string:
			copy(buf[off:], v)
			rc = lib.Xsqlite3_bind_text(c.tls, st, idx, c.mem+uintptr(off), int32(len(v)), 0)
			off += len(v)
		case []byte:
			if len(v) == 0 {
				rc = lib.Xsqlite3_bind_zeroblob(c.tls, st, idx, 0)
				break
			}
			copy(buf[off:], v)
			rc = lib.Xsqlite3_bind_blob(c.tls, st, idx, c.mem+uintptr(off), int32(len(v)), 0)
			off += len(v)
		case int64:
			rc = lib.Xsqlite3_bind_int64(c.tls, st, idx, v)
		case int:
			rc = lib.Xsqlite3_bind_int64(c.tls, st, idx, int64(v))
		default:
			return fmt.Errorf("cannot bind %T", a)
		}
		if rc != lib.SQLITE_OK {
			return c.err(rc)
		}
	}
	return nil
}

// exec runs a statement that returns no rows and reports how many rows it changed.
func (c *rawConn) exec(query string, args ...any) (int64, error) {
	if err := c.run(query, args, nil); err != nil {
		return 0, err
	}
	return lib.Xsqlite3_changes64(c.tls, c.db), nil
}

// query runs a statement and calls fn for each row.
func (c *rawConn) query(query string, args []any, fn func(rawRow) error) error {
	return c.run(query, args, fn)
}

func (c *rawConn) run(query string, args []any, fn func(rawRow) error) error {
	st, err := c.prepare(query)
	if err != nil {
		return err
	}
	// Reset leaves the statement ready for its next use; clearing drops pointers into c.mem.
	defer func() {
		lib.Xsqlite3_reset(c.tls, st)
		lib.Xsqlite3_clear_bindings(c.tls, st)
	}()
	if err := c.bind(st, args); err != nil {
		return err
	}
	for {
		switch rc := lib.Xsqlite3_step(c.tls, st); rc {
		case lib.SQLITE_DONE:
			return nil
		case lib.SQLITE_ROW:
			if fn == nil {
				continue
			}
			if err := fn(rawRow{c.tls, st}); err != nil {
				return err
			}
		default:
			return c.err(rc)
		}
	}
}

// rawRow reads the current row of a statement; its values are copied out.
type rawRow struct {
	tls *libc.TLS
	st  uintptr
}

func (r rawRow) null(i int) bool {
	return lib.Xsqlite3_column_type(r.tls, r.st, int32(i)) == lib.SQLITE_NULL
}

func (r rawRow) int64(i int) int64 { return lib.Xsqlite3_column_int64(r.tls, r.st, int32(i)) }

func (r rawRow) text(i int) string {
	p := lib.Xsqlite3_column_text(r.tls, r.st, int32(i))
	n := lib.Xsqlite3_column_bytes(r.tls, r.st, int32(i))
	if p == 0 || n == 0 {
		return ""
	}
	return string(unsafe.Slice((*byte)(cptr(p)), n))
}

// bytes returns a copy of a blob or text column (nil for NULL).
func (r rawRow) bytes(i int) []byte {
	if r.null(i) {
		return nil
	}
	p := lib.Xsqlite3_column_blob(r.tls, r.st, int32(i))
	n := lib.Xsqlite3_column_bytes(r.tls, r.st, int32(i))
	out := make([]byte, n)
	if n > 0 {
		copy(out, unsafe.Slice((*byte)(cptr(p)), n))
	}
	return out
}

// cptr turns an address of C memory (modernc.org/libc's heap, never Go's) into a pointer. The
// collector ignores such pointers, so holding one is safe; go vet cannot know the address is not
// Go memory, hence the detour through the variable's own address.
func cptr(p uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }
