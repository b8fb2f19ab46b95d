package codec

// bitWriter appends bits to a byte slice, most significant bit first, as
// Prometheus' XOR chunks do. Decimal chunks (compact_decimal.go) need one:
// chunkenc keeps its bit stream unexported.
type bitWriter struct {
	buf  []byte
	free uint // unused low bits of buf's last byte
}

// write appends the low n bits of v, n ≤ 64.
func (w *bitWriter) write(v uint64, n uint) {
	for n > 0 {
		if w.free == 0 {
			w.buf = append(w.buf, 0)
			w.free = 8
		}
		take := min(n, w.free)
		part := (v >> (n - take)) & (1<<take - 1)
		w.buf[len(w.buf)-1] |= byte(part << (w.free - take))
		w.free -= take
		n -= take
	}
}

// zeros appends n zero bits.
func (w *bitWriter) zeros(n int) {
	if n <= int(w.free) {
		w.free -= uint(n)
		return
	}
	n -= int(w.free)
	w.buf = append(w.buf, make([]byte, (n+7)/8)...)
	w.free = uint(7 - (n+7)%8)
}

// bitReader reads what a bitWriter wrote.
type bitReader struct {
	buf []byte
	pos uint64 // in bits
}

// read returns the next n bits, n ≤ 64, or false if fewer are left.
func (r *bitReader) read(n uint) (uint64, bool) {
	if r.pos+uint64(n) > uint64(len(r.buf))*8 {
		return 0, false
	}
	var v uint64
	for n > 0 {
		off := uint(r.pos % 8)
		take := min(n, 8-off)
		part := uint64(r.buf[r.pos/8]>>(8-off-take)) & (1<<take - 1)
		v = v<<take | part
		r.pos += uint64(take)
		n -= take
	}
	return v, true
}
