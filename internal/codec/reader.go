package codec

import (
	"encoding/binary"
	"fmt"
)

// decodeReader reads varints and fixed fields with a sticky error: after
// the first failure every read returns zero, so callers check once per
// record instead of after every field.
type decodeReader struct {
	buf []byte
	off int
	err error
}

func (r *decodeReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("at byte %d: %s", r.off, fmt.Sprintf(format, args...))
	}
}

func (r *decodeReader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.buf[r.off:])
	if n <= 0 {
		r.fail("%s: truncated or overlong uvarint", what)
		return 0
	}
	r.off += n
	return v
}

func (r *decodeReader) varint(what string) int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.buf[r.off:])
	if n <= 0 {
		r.fail("%s: truncated or overlong varint", what)
		return 0
	}
	r.off += n
	return v
}

func (r *decodeReader) byte(what string) byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.buf) {
		r.fail("%s: truncated", what)
		return 0
	}
	r.off++
	return r.buf[r.off-1]
}

func (r *decodeReader) fixed64(what string) uint64 {
	if r.err != nil {
		return 0
	}
	if len(r.buf)-r.off < 8 {
		r.fail("%s: need 8 bytes, %d left", what, len(r.buf)-r.off)
		return 0
	}
	v := binary.LittleEndian.Uint64(r.buf[r.off:])
	r.off += 8
	return v
}

// count reads the number of items that follow, each at least minBytes
// long, and rejects a count the remaining input cannot hold. The result is
// therefore safe to size an allocation with.
func (r *decodeReader) count(what string, minBytes int) int {
	v := r.uvarint(what)
	if r.err != nil {
		return 0
	}
	if left := len(r.buf) - r.off; v > uint64(left/minBytes) {
		r.fail("%s %d does not fit in the %d bytes left", what, v, left)
		return 0
	}
	return int(v)
}

// length reads a byte length and checks that many bytes are left.
func (r *decodeReader) length(what string) int {
	v := r.uvarint(what)
	if r.err != nil {
		return 0
	}
	if left := len(r.buf) - r.off; v > uint64(left) {
		r.fail("%s %d exceeds the %d bytes left", what, v, left)
		return 0
	}
	return int(v)
}

// symbol reads a symbol reference and resolves it.
func (r *decodeReader) symbol(syms []string) string {
	v := r.uvarint("symbol ref")
	if r.err != nil {
		return ""
	}
	if v >= uint64(len(syms)) {
		r.fail("symbol ref %d out of range (%d symbols)", v, len(syms))
		return ""
	}
	return syms[v]
}
