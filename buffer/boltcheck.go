package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"

	bolt "go.etcd.io/bbolt"
)

// bbolt's on-disk format, as far as checkBoltFile needs it (bbolt
// internal/common: page.go, meta.go, bucket.go). It has been stable since
// bbolt's format version 2; the meta page's txid is compared with what
// bbolt itself reads, so a misreading of the format fails the check
// instead of passing it.
const (
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	boltPageHeader  = 16 // id u64, flags u16, count u16, overflow u32
	boltElement     = 16 // branch: pos u32, ksize u32, pgid u64; leaf: flags u32, pos u32, ksize u32, vsize u32
	boltBucketValue = 16 // root pgid u64, sequence u64; an inline page follows if root is 0
	boltBranch      = 0x01
	boltLeaf        = 0x02
	boltFreelist    = 0x10
	boltBucketEntry = 0x01
	boltNoFreelist  = math.MaxUint64
	// boltMaxDepth bounds the page tree: a B+tree of 4 KiB pages holding
	// 16-byte elements is 5 levels deep at a terabyte.
	boltMaxDepth = 32
)

// checkBoltFile checks, reading the file with ReadAt rather than through
// bbolt's mmap, every bound bbolt trusts when it walks the page tree: each
// page number is below the high-water mark and inside the file, each page
// is reached once (no cycles, no shared pages), the tree is shallow, each
// key and value lies inside its page, each page has the type its parent
// says, and freed pages are not in use. bbolt's own walks (freelist
// rebuild, Check) cannot then read outside the file or loop, whatever the
// file's content. txid is the meta bbolt opened, which must be the one
// read here; size is the file's size.
func checkBoltFile(f io.ReaderAt, size int64, pageSize int, txid uint64) error {
	c := &treeCheck{f: f, pageSize: int64(pageSize)}
	m, err := c.meta(txid)
	if err != nil {
		return err
	}
	if m.pgid > uint64(size/c.pageSize) {
		return fmt.Errorf("file of %d bytes is shorter than its %d pages: truncated", size, m.pgid)
	}
	c.hwm = m.pgid
	c.used = make([]uint64, (m.pgid+63)/64)
	if _, err := c.node(m.root, 0, nil, nil); err != nil {
		return err
	}
	if m.freelist != boltNoFreelist {
		return c.freelist(m.freelist)
	}
	return nil
}

type treeCheck struct {
	f        io.ReaderAt
	pageSize int64
	hwm      uint64   // pages below it are in use or free; none above
	used     []uint64 // bitmap of pages reached so far, overflow included
}

// read reads len(buf) bytes at off, part of page id.
func (c *treeCheck) read(buf []byte, off int64, id uint64) error {
	_, err := c.f.ReadAt(buf, off)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("page %d lies past the end of the file: truncated", id)
	case err != nil:
		return fmt.Errorf("page %d: %w", id, err)
	}
	return nil
}

type boltMetaPage struct{ root, freelist, pgid, txid uint64 }

// meta picks the meta page as bbolt does: the valid one with the higher
// transaction id.
func (c *treeCheck) meta(txid uint64) (boltMetaPage, error) {
	ne := binary.NativeEndian
	pick, found := boltMetaPage{}, false
	for i := range int64(2) {
		buf := make([]byte, boltPageHeader+64)
		if _, err := c.f.ReadAt(buf, i*c.pageSize); err != nil {
			continue
		}
		m := buf[boltPageHeader:]
		h := fnv.New64a()
		h.Write(m[:56])
		if ne.Uint32(m) != boltMagic || ne.Uint32(m[4:]) != boltVersion || h.Sum64() != ne.Uint64(m[56:]) {
			continue
		}
		mp := boltMetaPage{root: ne.Uint64(m[16:]), freelist: ne.Uint64(m[32:]), pgid: ne.Uint64(m[40:]), txid: ne.Uint64(m[48:])}
		if !found || mp.txid > pick.txid {
			pick, found = mp, true
		}
	}
	switch {
	case !found:
		return pick, errors.New("no valid meta page")
	case pick.txid != txid:
		return pick, fmt.Errorf("meta page of transaction %d, bbolt opened %d", pick.txid, txid)
	}
	return pick, nil
}

// page reads the header of page id, checks it and marks the page and its
// overflow as reached. It returns the flags, element count and the size
// in bytes of the page with its overflow.
func (c *treeCheck) page(id uint64) (flags uint16, count int, size int64, err error) {
	if id < 2 || id >= c.hwm {
		return 0, 0, 0, fmt.Errorf("page %d outside [2, %d)", id, c.hwm)
	}
	var h [boltPageHeader]byte
	if err := c.read(h[:], int64(id)*c.pageSize, id); err != nil {
		return 0, 0, 0, err
	}
	ne := binary.NativeEndian
	overflow := uint64(ne.Uint32(h[12:]))
	switch {
	case ne.Uint64(h[:]) != id:
		return 0, 0, 0, fmt.Errorf("page %d is labelled %d", id, ne.Uint64(h[:]))
	case id+overflow >= c.hwm:
		return 0, 0, 0, fmt.Errorf("page %d: %d overflow pages run past %d", id, overflow, c.hwm)
	}
	for p := id; p <= id+overflow; p++ {
		if c.used[p/64]&(1<<(p%64)) != 0 {
			return 0, 0, 0, fmt.Errorf("page %d reached twice", p)
		}
		c.used[p/64] |= 1 << (p % 64)
	}
	return ne.Uint16(h[8:]), int(ne.Uint16(h[10:])), int64(overflow+1) * c.pageSize, nil
}

// node checks the branch or leaf page id and everything below it,
// including the key order bbolt's own walk insists on: keys ascend within
// a page, and a child's keys lie in [its key in the parent, the parent's
// next key). It returns the largest key below id.
func (c *treeCheck) node(id uint64, depth int, minKey, maxKey []byte) ([]byte, error) {
	if depth > boltMaxDepth {
		return nil, fmt.Errorf("page tree deeper than %d at page %d", boltMaxDepth, id)
	}
	flags, count, size, err := c.page(id)
	if err != nil {
		return nil, err
	}
	if flags != boltBranch && flags != boltLeaf {
		return nil, fmt.Errorf("page %d has type %#x, want branch or leaf", id, flags)
	}
	if flags == boltBranch && count == 0 {
		return nil, fmt.Errorf("branch page %d is empty", id)
	}
	if boltPageHeader+int64(count)*boltElement > size {
		return nil, fmt.Errorf("page %d: %d elements overflow it", id, count)
	}
	base := int64(id) * c.pageSize
	elems := make([]byte, count*boltElement)
	if err := c.read(elems, base+boltPageHeader, id); err != nil {
		return nil, err
	}
	ne := binary.NativeEndian
	posAt, ksizeAt := 0, 4 // in a branch element
	if flags == boltLeaf {
		posAt, ksizeAt = 4, 8
	}
	// key reads element i's key, which lies at offset pos from the element.
	key := func(i int) ([]byte, error) {
		e := elems[i*boltElement:]
		at := int64(boltPageHeader+i*boltElement) + int64(ne.Uint32(e[posAt:]))
		ksize := int64(ne.Uint32(e[ksizeAt:]))
		if ksize > bolt.MaxKeySize || at+ksize > size {
			return nil, fmt.Errorf("page %d: key %d lies outside the page", id, i)
		}
		k := make([]byte, ksize)
		return k, c.read(k, base+at, id)
	}
	prev := minKey
	for i := range count {
		k, err := key(i)
		if err != nil {
			return nil, err
		}
		if (i == 0 && prev != nil && bytes.Compare(prev, k) > 0) || (i > 0 && bytes.Compare(prev, k) >= 0) ||
			(maxKey != nil && bytes.Compare(k, maxKey) >= 0) {
			return nil, fmt.Errorf("page %d: key %d (%x) out of order", id, i, k)
		}
		e := elems[i*boltElement:]
		if flags == boltBranch {
			next := maxKey
			if i+1 < count {
				if next, err = key(i + 1); err != nil {
					return nil, err
				}
			}
			if prev, err = c.node(ne.Uint64(e[8:]), depth+1, k, next); err != nil {
				return nil, err
			}
			continue
		}
		prev = k
		vat := int64(boltPageHeader+i*boltElement) + int64(ne.Uint32(e[4:])) + int64(ne.Uint32(e[8:]))
		vsize := int64(ne.Uint32(e[12:]))
		if vat+vsize > size {
			return nil, fmt.Errorf("leaf page %d: value %d lies outside the page", id, i)
		}
		if ne.Uint32(e)&boltBucketEntry == 0 {
			continue
		}
		if vsize < boltBucketValue || vsize > c.pageSize {
			return nil, fmt.Errorf("leaf page %d: bucket %d has a %d-byte value", id, i, vsize)
		}
		v := make([]byte, vsize)
		if err := c.read(v, base+vat, id); err != nil {
			return nil, err
		}
		if err := c.bucket(v, depth+1); err != nil {
			return nil, err
		}
	}
	return prev, nil
}

// bucket checks a bucket value: its root page, or its inline page.
func (c *treeCheck) bucket(v []byte, depth int) error {
	if depth > boltMaxDepth {
		return fmt.Errorf("buckets nested deeper than %d", boltMaxDepth)
	}
	ne := binary.NativeEndian
	if root := ne.Uint64(v); root != 0 {
		_, err := c.node(root, depth, nil, nil)
		return err
	}
	p := v[boltBucketValue:]
	if len(p) < boltPageHeader || ne.Uint16(p[8:]) != boltLeaf {
		return errors.New("inline bucket without a leaf page")
	}
	count := int(ne.Uint16(p[10:]))
	if boltPageHeader+count*boltElement > len(p) {
		return fmt.Errorf("inline bucket: %d elements overflow it", count)
	}
	for i := range count {
		e := p[boltPageHeader+i*boltElement:]
		vat := boltPageHeader + i*boltElement + int(ne.Uint32(e[4:])) + int(ne.Uint32(e[8:]))
		vend := vat + int(ne.Uint32(e[12:]))
		if vat < 0 || vend < vat || vend > len(p) {
			return fmt.Errorf("inline bucket: element %d lies outside it", i)
		}
		if ne.Uint32(e)&boltBucketEntry != 0 {
			if vend-vat < boltBucketValue {
				return fmt.Errorf("inline bucket: bucket %d has a %d-byte header", i, vend-vat)
			}
			if err := c.bucket(p[vat:vend], depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// freelist checks that the freelist page lists pages that exist and are
// not in the tree.
func (c *treeCheck) freelist(id uint64) error {
	flags, count, size, err := c.page(id)
	if err != nil {
		return err
	}
	if flags != boltFreelist {
		return fmt.Errorf("freelist page %d has type %#x", id, flags)
	}
	start, n := int64(boltPageHeader), int64(count)
	if count == 0xFFFF { // the real count is the first element
		var b [8]byte
		if err := c.read(b[:], int64(id)*c.pageSize+start, id); err != nil {
			return err
		}
		n, start = int64(binary.NativeEndian.Uint64(b[:])), start+8
	}
	if n < 0 || n > size/8 || start+n*8 > size {
		return fmt.Errorf("freelist page %d: %d ids overflow it", id, n)
	}
	ids := make([]byte, n*8)
	if err := c.read(ids, int64(id)*c.pageSize+start, id); err != nil {
		return err
	}
	for i := range n {
		p := binary.NativeEndian.Uint64(ids[i*8:])
		if p < 2 || p >= c.hwm || c.used[p/64]&(1<<(p%64)) != 0 {
			return fmt.Errorf("freelist page %d lists page %d: out of range, in use or listed twice", id, p)
		}
		c.used[p/64] |= 1 << (p % 64)
	}
	return nil
}
