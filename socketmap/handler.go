package socketmap

import "context"

// Handler answers lookups.
//
// Lookup is called once per well-formed request with the map name and
// the key as Postfix sent them (Postfix lower-cases keys for most tables
// itself; the Handler decides whether case matters). It returns the value
// for "OK value" (an empty value is a valid answer), or an error:
// ErrNotFound (possibly wrapped) for a key that is not there, an *Error
// from Temporary or Permanent to choose the status and the reason Postfix
// sees, ErrBadRequest for a request it cannot answer (an unknown map
// name). Any other error is answered TEMP with a generic reason and
// logged with the session id: a directory that is down is a temporary
// failure, never a "not found".
//
// Calls for different connections run concurrently, so a Handler must be
// safe for concurrent use. ctx ends when HandlerTimeout expires or the
// server is closed; a Handler returns promptly then.
type Handler interface {
	Lookup(ctx context.Context, mapName, key string) (value string, err error)
}

// HandlerFunc adapts a function to the Handler interface.
type HandlerFunc func(ctx context.Context, mapName, key string) (string, error)

// Lookup calls f(ctx, mapName, key).
func (f HandlerFunc) Lookup(ctx context.Context, mapName, key string) (string, error) {
	return f(ctx, mapName, key)
}
