package codec

// Decimal chunks. Most of what Redis reports are integers (counters,
// bytes, keys) or decimals with a few places (CPU seconds to the
// microsecond, ratios to the hundredth), and a counter grows by similar
// amounts from scrape to scrape. XOR chunks see none of that: a counter
// that moves costs them 15–30 bits a sample. A decimal chunk stores the
// integers n with v = n / 10^scale, bit for bit, as differences of the
// first or second order (whichever is smaller for the chunk), in a bit
// code whose width the encoder picks per chunk:
//
//	byte    chunkDecimal
//	uvarint k                 samples
//	byte    scale             0..maxDecimalScale
//	byte    order             1: residuals are n[i]-n[i-1], from i = 1
//	                          2: residuals are differences of those, from i = 2
//	varint  n[0]
//	varint  n[1]-n[0]         order 2 with k ≥ 2 only
//	byte    w                 0..64
//	bits    each residual, zig-zagged to z, most significant bit first:
//	        0                     z = 0
//	        10, w bits            z < 2^w
//	        11, 6 bits L-1, L bits  otherwise, L the bit length of z
//
// A constant chunk costs a bit a sample, a steady counter a few. A value
// that is no such decimal (NaN, a stale marker, ±Inf, -0, 1/3, beyond
// 2^53) sends its chunk to XOR, which keeps any float.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// Chunk kinds, the first byte of a chunk in a version 2 segment.
const (
	chunkXOR     byte = 0 // a Prometheus XOR chunk follows
	chunkDecimal byte = 1
)

// maxDecimalScale is the most decimal places a decimal chunk keeps: 10^15
// is exact in a float64, and with 2^53 as the largest integer part, more
// places would only fit values below 10.
const maxDecimalScale = 15

// pow10 holds 10^e, exact, for every scale. Read-only.
var pow10 = [maxDecimalScale + 1]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// decimalAt returns n with float64(n)/10^scale equal to v bit for bit, if
// there is one with |n| ≤ 2^53. The decoder computes exactly that
// quotient, so the check is the guarantee. A decimal at some scale is one
// at any larger scale as long as n fits: both quotients are the correctly
// rounded value of the same real number.
func decimalAt(v float64, scale int) (int64, bool) {
	x := math.Round(v * pow10[scale])
	if !(math.Abs(x) <= 1<<53) { // NaN fails here too
		return 0, false
	}
	n := int64(x)
	return n, math.Float64bits(float64(n)/pow10[scale]) == math.Float64bits(v)
}

// decimals sets ints to the integers of vals at the smallest scale that
// holds them all, and returns that scale, or false if there is none.
func decimals(ints []int64, vals []float64) ([]int64, int, bool) {
	scale := 0
	for _, v := range vals {
		for {
			if _, ok := decimalAt(v, scale); ok {
				break
			}
			if scale == maxDecimalScale {
				return ints, 0, false
			}
			scale++
		}
	}
	ints = ints[:0]
	for _, v := range vals {
		n, ok := decimalAt(v, scale)
		if !ok { // a value with a large integer part at a large scale
			return ints, 0, false
		}
		ints = append(ints, n)
	}
	return ints, scale, true
}

// zigzag maps residuals of either sign to small unsigned integers.
func zigzag(r int64) uint64 { return uint64(r<<1) ^ uint64(r>>63) }

func unzigzag(z uint64) int64 { return int64(z>>1) ^ -int64(z&1) }

// residual is the order-th difference of ints at i (i ≥ order).
func residual(ints []int64, i, order int) int64 {
	d := ints[i] - ints[i-1]
	if order == 2 {
		d -= ints[i-1] - ints[i-2]
	}
	return d
}

// residualCode picks the width w for residuals of the given order and
// returns it with the size of their bits.
func residualCode(ints []int64, order int) (w uint, size int) {
	var hist [65]int // by bit length of the zig-zagged residual
	for i := order; i < len(ints); i++ {
		hist[bits.Len64(zigzag(residual(ints, i, order)))]++
	}
	// cost(w) = hist[0] + (2+w)·Σ_{1≤L≤w} hist[L] + Σ_{L>w} (8+L)·hist[L]
	escaped := 0
	for l := 1; l <= 64; l++ {
		escaped += (8 + l) * hist[l]
	}
	fits := 0
	w, size = 0, hist[0]+escaped
	for l := 1; l <= 64; l++ {
		fits += hist[l]
		escaped -= (8 + l) * hist[l]
		if c := hist[0] + (2+l)*fits + escaped; c < size {
			w, size = uint(l), c
		}
	}
	return w, size
}

// appendDecimalChunk appends the decimal chunk of ints at scale.
func appendDecimalChunk(dst []byte, ints []int64, scale int) []byte {
	order := 1
	w, size1 := residualCode(ints, 1)
	if len(ints) > 2 {
		w2, size2 := residualCode(ints, 2)
		// Order 2 also stores the first difference, a varint.
		if size2+8*varintLen(ints[1]-ints[0]) < size1 {
			order, w = 2, w2
		}
	}
	dst = append(dst, chunkDecimal)
	dst = binary.AppendUvarint(dst, uint64(len(ints)))
	dst = append(dst, byte(scale), byte(order))
	dst = binary.AppendVarint(dst, ints[0])
	if order == 2 {
		dst = binary.AppendVarint(dst, ints[1]-ints[0])
	}
	dst = append(dst, byte(w))
	bw := bitWriter{buf: dst}
	for i := order; i < len(ints); i++ {
		z := zigzag(residual(ints, i, order))
		switch l := uint(bits.Len64(z)); {
		case l == 0:
			bw.write(0, 1)
		case l <= w:
			bw.write(0b10, 2)
			bw.write(z, w)
		default:
			bw.write(0b11, 2)
			bw.write(uint64(l-1), 6)
			bw.write(z, l)
		}
	}
	return bw.buf
}

// appendConstantDecimalChunk appends the decimal chunk of k copies of n
// at scale, without materialising them: a long constant chunk is common.
func appendConstantDecimalChunk(dst []byte, n int64, k, scale int) []byte {
	dst = append(dst, chunkDecimal)
	dst = binary.AppendUvarint(dst, uint64(k))
	dst = append(dst, byte(scale), 1)
	dst = binary.AppendVarint(dst, n)
	dst = append(dst, 0) // w
	bw := bitWriter{buf: dst}
	bw.zeros(k - 1)
	return bw.buf
}

func varintLen(v int64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutVarint(b[:], v)
}

// decimalIter reads a decimal chunk's values.
type decimalIter struct {
	r        bitReader
	k, i     int // samples, and read so far
	scale    int
	order    int
	w        uint
	n, d, d1 int64
}

// errDecimalEnd is what next says past a chunk's last sample.
var errDecimalEnd = errors.New("decimal chunk ends")

// openDecimal reads the header of the decimal chunk c (kind byte
// included), which must hold at most limit samples.
func openDecimal(c []byte, limit int) (decimalIter, error) {
	r := decodeReader{buf: c, off: 1}
	k := r.uvarint("sample count")
	scale := r.byte("scale")
	order := r.byte("order")
	n0 := r.varint("first value")
	var d1 int64
	if order == 2 && k >= 2 {
		d1 = r.varint("first difference")
	}
	w := r.byte("width")
	switch {
	case r.err != nil:
		return decimalIter{}, fmt.Errorf("decimal chunk: %w", r.err)
	case k == 0 || k > uint64(limit):
		return decimalIter{}, fmt.Errorf("decimal chunk claims %d samples, %d left to its series", k, limit)
	case scale > maxDecimalScale || (order != 1 && order != 2) || w > 64:
		return decimalIter{}, fmt.Errorf("decimal chunk: scale %d, order %d, width %d", scale, order, w)
	}
	// Each residual takes a bit at least.
	if resid := int(k) - int(order); resid > 8*(len(c)-r.off) {
		return decimalIter{}, fmt.Errorf("decimal chunk of %d bytes claims %d samples", len(c), k)
	}
	return decimalIter{r: bitReader{buf: c[r.off:]}, k: int(k), scale: int(scale), order: int(order),
		w: uint(w), n: n0, d1: d1}, nil
}

// next returns the chunk's next value.
func (it *decimalIter) next() (float64, error) {
	switch {
	case it.i == it.k:
		return 0, errDecimalEnd
	case it.i == 0:
	case it.i == 1 && it.order == 2:
		it.d = it.d1
		it.n += it.d
	default:
		r, err := it.residual()
		if err != nil {
			return 0, fmt.Errorf("decimal chunk sample %d: %w", it.i, err)
		}
		if it.order == 2 {
			it.d += r
			it.n += it.d
		} else {
			it.n += r
		}
	}
	it.i++
	return float64(it.n) / pow10[it.scale], nil
}

var errBitsEnd = errors.New("bits end early")

func (it *decimalIter) residual() (int64, error) {
	b, ok := it.r.read(1)
	if !ok {
		return 0, errBitsEnd
	}
	if b == 0 {
		return 0, nil
	}
	if b, ok = it.r.read(1); !ok {
		return 0, errBitsEnd
	}
	width := it.w
	if b == 1 {
		l, ok := it.r.read(6)
		if !ok {
			return 0, errBitsEnd
		}
		width = uint(l) + 1
	}
	z, ok := it.r.read(width)
	if !ok {
		return 0, errBitsEnd
	}
	return unzigzag(z), nil
}
