package policy

import "context"

// Handler answers policy requests.
//
// Policy is called once per well-formed request, from the connection's
// goroutine; calls for different connections run concurrently, so a
// Handler must be safe for concurrent use. It returns the action to send,
// or an error when it cannot decide (a directory or quota store that
// cannot be read): the server then logs the error with the session id and
// answers Server.ErrorAction, a temporary refusal. An error never reaches
// Postfix as text. Dunno is the answer for "no opinion", including for
// requests the Handler does not understand (another request type, a
// protocol state it does not check).
//
// ctx ends when the per-request HandlerTimeout expires or the server is
// closed; a Handler returns promptly then (an error is fine). req belongs
// to the Handler for the duration of the call.
type Handler interface {
	Policy(ctx context.Context, req *Request) (Action, error)
}

// HandlerFunc adapts a function to the Handler interface.
type HandlerFunc func(ctx context.Context, req *Request) (Action, error)

// Policy calls f(ctx, req).
func (f HandlerFunc) Policy(ctx context.Context, req *Request) (Action, error) {
	return f(ctx, req)
}
