package directory

import (
	"errors"
	"sync/atomic"
	"time"
)

// Kind is the kind of a lookup.
type Kind int

// The lookups a Directory answers.
const (
	KindUser     Kind = iota // LookupUser
	KindAlias                // LookupAlias
	KindPassword             // LookupPassword
	KindAuth                 // Authenticator.Authenticate (never cached)
	numKinds
)

// String returns "user", "alias", "password" or "auth", the label
// metrics use.
func (k Kind) String() string {
	switch k {
	case KindUser:
		return "user"
	case KindAlias:
		return "alias"
	case KindPassword:
		return "password"
	case KindAuth:
		return "auth"
	}
	return "unknown"
}

// Result classifies the outcome of a lookup.
type Result int

// Lookup outcomes. ResultBadPassword is only seen for KindAuth.
const (
	ResultFound       Result = iota // an answer
	ResultNotFound                  // ErrNotFound: the directory answered "no such entry"
	ResultError                     // not known now: timeout, refused, broken
	ResultBadPassword               // ErrBadPassword
	numResults
)

// String returns "found", "not_found", "error" or "bad_password", the
// label metrics use.
func (r Result) String() string {
	switch r {
	case ResultFound:
		return "found"
	case ResultNotFound:
		return "not_found"
	case ResultError:
		return "error"
	case ResultBadPassword:
		return "bad_password"
	}
	return "unknown"
}

// ResultOf classifies err.
func ResultOf(err error) Result {
	switch {
	case err == nil:
		return ResultFound
	case errors.Is(err, ErrNotFound):
		return ResultNotFound
	case errors.Is(err, ErrBadPassword):
		return ResultBadPassword
	}
	return ResultError
}

// Source says where an answer came from.
type Source int

// Answer sources.
const (
	SourceDirectory Source = iota // this caller's own query to the directory
	SourceCache                   // a cache entry within its TTL
	SourceShared                  // another caller's query in flight (single flight)
	numSources
)

// String returns "directory", "cache" or "shared".
func (s Source) String() string {
	switch s {
	case SourceDirectory:
		return "directory"
	case SourceCache:
		return "cache"
	case SourceShared:
		return "shared"
	}
	return "unknown"
}

// Event describes one answered lookup, as the Cache wrapper saw it.
type Event struct {
	Directory string // the directory's Name
	Kind      Kind
	Result    Result
	Source    Source
	// Duration is the time the caller waited, zero for cache hits.
	Duration time.Duration
}

// Observer receives one Event per lookup a Cache answers. It is called
// synchronously on the lookup's goroutine, from many goroutines at once,
// so it must be cheap and safe for concurrent use. cmd/lmtpd implements
// it with Prometheus counters and a latency histogram; this package does
// not import Prometheus.
type Observer interface {
	Observe(Event)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Event)

// Observe calls f(e).
func (f ObserverFunc) Observe(e Event) { f(e) }

// Stats is an Observer that counts events with atomic counters. The zero
// Stats is ready; it is safe for concurrent use.
type Stats struct {
	n     [numKinds][numResults][numSources]atomic.Int64
	nanos [numKinds]atomic.Int64 // summed Duration of SourceDirectory and SourceShared events
}

// Observe counts e.
func (s *Stats) Observe(e Event) {
	if e.Kind < 0 || e.Kind >= numKinds || e.Result < 0 || e.Result >= numResults || e.Source < 0 || e.Source >= numSources {
		return
	}
	s.n[e.Kind][e.Result][e.Source].Add(1)
	if e.Source != SourceCache {
		s.nanos[e.Kind].Add(int64(e.Duration))
	}
}

// Count returns how many events matched kind, result and source.
func (s *Stats) Count(k Kind, r Result, src Source) int64 {
	if k < 0 || k >= numKinds || r < 0 || r >= numResults || src < 0 || src >= numSources {
		return 0
	}
	return s.n[k][r][src].Load()
}

// Queries returns how many lookups of kind k went to the directory
// (whatever their result): the cost the cache and single flight save.
func (s *Stats) Queries(k Kind) int64 {
	var t int64
	for r := Result(0); r < numResults; r++ {
		t += s.Count(k, r, SourceDirectory)
	}
	return t
}

// Total returns how many lookups of kind k were answered, from any
// source.
func (s *Stats) Total(k Kind) int64 {
	var t int64
	for r := Result(0); r < numResults; r++ {
		for src := Source(0); src < numSources; src++ {
			t += s.Count(k, r, src)
		}
	}
	return t
}

// Latency returns the summed wait of the non-cached lookups of kind k.
func (s *Stats) Latency(k Kind) time.Duration {
	if k < 0 || k >= numKinds {
		return 0
	}
	return time.Duration(s.nanos[k].Load())
}
