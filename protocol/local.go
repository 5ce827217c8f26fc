package protocol

import (
	"context"
	"io"
	"time"
)

// LocalEnvelope is the envelope of a message handed over by a program on
// this host rather than over the network: a local delivery agent such as
// Postfix's mailbox_command, given the sender and recipients as
// arguments and the message on its standard input.
type LocalEnvelope struct {
	// From is the reverse-path; the zero Address is the null sender <>.
	From Address
	// Recipients are the recipients in order; DeliverLocal returns one
	// status for each, duplicates included.
	Recipients []Address
	// Origin says who handed the message over ("alice uid 1000"); it
	// appears in the comment of the Received field ("from Origin").
	// Empty: left out.
	Origin string
}

// DeliverLocal runs one locally submitted message through s.Backend as
// one transaction, the way a session does for a message received over
// the network: the header is read from r with the same reader and under
// MaxHeaderBytes (lines may end in LF alone, as a local program writes
// them; they are passed on as they are), the message gets an id from
// the server's sequence, the server's Received field goes on top (unless
// DisableReceived), then Backend.Mail, Transaction.Rcpt for each
// recipient and Transaction.Data, whose statuses are collected as in
// LMTP, one per recipient. The Received field of a local delivery names
// no client and no protocol (RFC 5321 section 4.4): "by" the server's
// Hostname, with Software and "from" env.Origin as its comment. The
// connection the backend sees is a ConnState with Protocol LMTP,
// Hostname "localhost" and no addresses. MaxReceivedHeaders does not
// apply: the MTA that runs a local delivery agent has counted the hops.
//
// The result has one status per env.Recipients entry, in order: nil for
// delivered, the refusal of Mail or Rcpt, or the status Data gave (see
// Transaction.Data). Outcomes of the recipients that reached Data are
// reported as a session reports them (Server.OnOutcome, or the server's
// own log line). The error is not nil only when the message could not be
// read up to the end of its header (ErrHeaderTooBig, or r's error): then
// the backend was not called. r is read no further than Data reads
// msg.Body; ctx is what the backend's calls receive, with the logger of
// the delivery (Server.Logger, with its session id) added.
//
// DeliverLocal may be called concurrently and does not need Serve; it
// must not be used after Close.
func (s *Server) DeliverLocal(ctx context.Context, env LocalEnvelope, r io.Reader) ([]error, error) {
	s.init()
	start := time.Now()
	st := &ConnState{ID: s.ids.Next(), Protocol: LMTP, Hostname: "localhost", ESMTP: true}
	log := s.logger().With().Str("session", st.ID).Str("proto", "local").Logger()
	ctx = log.WithContext(ctx)

	hr := getHeaderReader(r)
	defer putHeaderReader(hr)
	var sc headerScratch
	raw, _, body, err := readHeader(hr, orInt(s.MaxHeaderBytes, DefaultMaxHeaderBytes), &sc, nil)
	if err != nil {
		return nil, err
	}
	statuses := make([]error, len(env.Recipients))
	if len(env.Recipients) == 0 {
		return statuses, nil
	}

	params := &MailParams{}
	tx, err := s.Backend.Mail(ctx, st, env.From, params)
	if err != nil {
		for i := range statuses {
			statuses[i] = err
		}
		return statuses, nil
	}
	defer tx.Close()
	accepted := make([]*Recipient, 0, len(env.Recipients))
	index := make([]int, 0, len(env.Recipients)) // accepted recipient -> env.Recipients index
	for i, a := range env.Recipients {
		rc := &Recipient{Address: a}
		if err := tx.Rcpt(ctx, rc); err != nil {
			statuses[i] = err
			continue
		}
		accepted = append(accepted, rc)
		index = append(index, i)
	}
	if len(accepted) == 0 {
		return statuses, nil
	}

	msg := &Message{ID: st.ID + ".1", Conn: st, From: env.From, Params: params, Recipients: accepted, Body: body}
	if !s.DisableReceived {
		top := s.localReceived(msg, env.Origin)
		raw = append(top, raw...)
	}
	msg.hdr = &headerState{raw: raw}
	sl := NewStatusList(len(accepted))
	results := sl.Finish(tx.Data(ctx, msg, sl))
	msg.Body = nil
	for j, i := range index {
		statuses[i] = results[j]
	}
	s.reportOutcomes(ctx, &log, msg, results, time.Since(start), new(Outcome))
	return statuses, nil
}

// localReceived returns the Received field of a local delivery (see
// DeliverLocal), folded and CRLF-terminated. The "for" clause names the
// recipient only when there is exactly one, as for the network.
func (s *Server) localReceived(m *Message, origin string) []byte {
	b := make([]byte, 0, 160)
	b = append(b, "Received: by "...)
	b = appendHeaderWord(b, s.hostname(), false)
	if s.Software != "" || origin != "" {
		b = append(b, " ("...)
		b = appendCommentText(b, s.Software)
		if origin != "" {
			if s.Software != "" {
				b = append(b, ", "...)
			}
			b = append(b, "from "...)
			b = appendCommentText(b, origin)
		}
		b = append(b, ')')
	}
	b = append(b, "\r\n\tid "...)
	b = append(b, m.ID...)
	if len(m.Recipients) == 1 {
		b = appendFor(b, &m.Recipients[0].Address, false)
	}
	b = append(b, ";\r\n\t"...)
	b = time.Now().AppendFormat(b, receivedDateLayout)
	return append(b, "\r\n"...)
}
