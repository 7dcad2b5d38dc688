package store

import (
	"encoding/base64"
	"encoding/binary"
	"hash/fnv"
	"slices"
)

const pageTokenVersion = 1

// EncodePageToken returns the ListTasks page token that continues after the task with creation
// sequence seq, for filter f. Every backend issues the same tokens, so a token survives a
// migration from one backend to another.
func EncodePageToken(seq int64, f Filter) string {
	b := make([]byte, 0, 17)
	b = append(b, pageTokenVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(seq))
	b = binary.BigEndian.AppendUint64(b, pageTokenSum(seq, f))
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodePageToken returns the creation sequence a token issued for f continues after; ok is
// false for a token issued for another filter or not issued by EncodePageToken.
func DecodePageToken(tok string, f Filter) (seq int64, ok bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 17 || b[0] != pageTokenVersion {
		return 0, false
	}
	seq = int64(binary.BigEndian.Uint64(b[1:9]))
	if seq < 0 || binary.BigEndian.Uint64(b[9:]) != pageTokenSum(seq, f) {
		return 0, false
	}
	return seq, true
}

// pageTokenSum binds a token to its position and filter. It is a checksum, not a secret:
// tokens must stay valid across restarts, and they reveal nothing a client cannot list.
func pageTokenSum(seq int64, f Filter) uint64 {
	h := fnv.New64a()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seq))
	h.Write(b[:])
	states := make([]string, len(f.States))
	for i, st := range f.States {
		states[i] = string(st)
	}
	slices.Sort(states)
	parts := append([]string{"flasher-page", f.ServerID, string(f.Method), f.Requester}, states...)
	if f.RolloutID != "" {
		// Only when set, so tokens issued before the field existed stay valid.
		parts = append(parts, "rollout", f.RolloutID)
	}
	for _, part := range parts {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return h.Sum64()
}
