// Package bencode implements the bencoding used by BitTorrent (BEP 3):
// byte strings "<len>:<bytes>", integers "i<n>e", lists "l...e" and
// dictionaries "d...e".
//
// The package is split by audience.
//
// The tracker's hot path builds announce and scrape replies with the
// append-style functions [AppendString], [AppendBytes], [AppendInt] and
// [AppendUint]. They use no reflection and do not allocate when dst has
// enough capacity, so a server can reuse one buffer per request. Callers
// write the container delimiters themselves: 'd' opens a dictionary, 'l'
// opens a list and 'e' closes either. Dictionary keys MUST be appended in
// strictly increasing raw byte order (the order of Go's string comparison,
// as produced by [sort.Strings]); bencode dictionaries are canonical and
// strict clients and [Decode] reject anything else. For example:
//
//	buf = append(buf[:0], 'd')
//	buf = bencode.AppendString(buf, "interval")
//	buf = bencode.AppendInt(buf, 1800)
//	buf = bencode.AppendString(buf, "peers")
//	buf = bencode.AppendBytes(buf, compactPeers)
//	buf = append(buf, 'e')
//
// Tests, tools and rarely used replies can use the generic [Append] and
// [Marshal], which take a tree of string, []byte, integers, []any and
// map[string]any and sort dictionary keys themselves.
//
// [Decode] is a strict decoder intended for tests and tools that must check
// that what the tracker emits (or receives) is canonical bencode: it accepts
// exactly one value with no trailing data, rejects non-canonical integers and
// string lengths, unsorted or duplicate dictionary keys, and nesting deeper
// than [MaxDepth]. It is safe on hostile input: it never panics and never
// allocates memory based on a claimed length before checking that length
// against the input. Errors are [*SyntaxError] values carrying the byte
// offset of the problem.
//
// Because every value Decode accepts is canonical, Marshal(Decode(x)) == x
// for every input x that Decode accepts.
package bencode
