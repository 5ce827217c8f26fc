package sieve

import (
	"strconv"
	"strings"
	"time"
)

// Kind names an action.
type Kind string

// The actions a script can take (RFC 5228 section 4 and the extensions).
const (
	ActKeep     Kind = "keep"
	ActFileinto Kind = "fileinto"
	ActRedirect Kind = "redirect"
	ActReject   Kind = "reject"
	ActEreject  Kind = "ereject"
	ActDiscard  Kind = "discard"
	ActVacation Kind = "vacation"
	ActNotify   Kind = "notify"
)

// Action is one thing delivery must do. Which fields apply depends on
// Kind.
type Action struct {
	Kind Kind
	// Mailbox is the target of fileinto ("INBOX" for keep), UTF-8, with
	// "." as hierarchy separator as written in the script.
	Mailbox string
	// Flags are the IMAP flags and keywords for keep and fileinto (RFC
	// 5232), deduplicated, in first-seen order.
	Flags []string
	// Copy is :copy (RFC 3894): the action does not cancel the implicit
	// keep.
	Copy bool
	// Create is :create (RFC 5490 section 3.2): create the mailbox if
	// it is missing.
	Create bool
	// SpecialUse is fileinto :specialuse (RFC 8579 section 4): store into
	// the mailbox that has this attribute if there is one, else into
	// Mailbox.
	SpecialUse string
	// Address is the redirect target (an addr-spec).
	Address string
	// Reason is the text of reject and ereject (RFC 5429).
	Reason string
	// Vacation holds the reply for ActVacation.
	Vacation *Vacation
	// Notify holds the notification for ActNotify.
	Notify *Notify
	// Edits is how many of Result.HeaderEdits were made before this
	// action: the message it stores or sends carries those (RFC 5293
	// section 5).
	Edits int
	// Script and Pos locate the command that made the action.
	Script string
	Pos    Pos
}

// Vacation is an auto-reply that passed the rules of RFC 5230 section 4.5
// and the tracking of section 4.2: delivery should send it and then record
// TrackKey for Period. Pigeonhole's reply, for reference, goes from the
// null sender with From (the :from or the recipient), To (the original
// From when it is the sender), Subject, In-Reply-To, References,
// "Auto-Submitted: auto-replied (vacation)", "Precedence: bulk",
// "X-Auto-Response-Suppress: All" and a text/plain UTF-8 body.
type Vacation struct {
	To         string // the envelope sender of the message, who gets the reply
	From       string // the reply's From: the :from argument or the user's address
	Subject    string // :subject or "Auto: " and the original subject
	Reason     string // the body; a MIME entity when Mime is true
	Mime       bool
	Handle     string
	Period     time.Duration // :days or :seconds
	InReplyTo  string        // the original Message-ID, for In-Reply-To and References
	References string        // the original References with the Message-ID appended
	TrackKey   string
}

// Notify is a notification of RFC 5435 by the mailto method (RFC 5436):
// delivery sends a short message to To (with the URI's header fields in
// Headers) from From, with Message as its subject and first line. It is
// listed only when RFC 5436 section 2.7 allows it (the message is not
// auto-submitted).
type Notify struct {
	Method     string // the URI as written
	To         []string
	Headers    map[string]string // header fields from the URI ("subject", "body", ...)
	From       string
	Importance string // "1" high, "2" normal, "3" low
	Options    []string
	Message    string
}

// HeaderEdit is one change of editheader (RFC 5293), in script order.
type HeaderEdit struct {
	Add   bool   // addheader; otherwise deleteheader
	Last  bool   // addheader :last: append instead of prepend
	Name  string // field name
	Value string // addheader: the value, unencoded UTF-8
	// Delete is the list of occurrences (1-based, counted among the
	// fields of that name in the header as it stood before this edit)
	// that deleteheader removes.
	Delete []int
}

// Mark is a tracking entry to record once the message was delivered
// (duplicate, RFC 7352 section 3: only after successful execution).
type Mark struct {
	Key    string
	Period time.Duration
	Last   bool // :last: the period runs from this delivery, not the first
}

// Result is what a script decided. ImplicitKeep is true when no action
// cancelled it (RFC 5228 section 2.10.2): delivery then keeps the message
// in INBOX with ImplicitKeepFlags and all of HeaderEdits applied (the
// message as the script left it, as Pigeonhole stores it). A Result owns
// its slices; the caller may keep and change it.
type Result struct {
	Actions           []Action
	ImplicitKeep      bool
	ImplicitKeepFlags []string
	HeaderEdits       []HeaderEdit
	Marks             []Mark
}

// String renders an action in a Sieve-like form, one line; the test
// corpus compares these.
func (a Action) String() string {
	var b strings.Builder
	b.WriteString(string(a.Kind))
	switch a.Kind {
	case ActKeep, ActFileinto:
		if a.Copy {
			b.WriteString(" :copy")
		}
		if a.Create {
			b.WriteString(" :create")
		}
		if a.SpecialUse != "" {
			b.WriteString(" :specialuse " + strconv.Quote(a.SpecialUse))
		}
		if len(a.Flags) > 0 {
			b.WriteString(" :flags " + strconv.Quote(strings.Join(a.Flags, " ")))
		}
		if a.Kind == ActFileinto {
			b.WriteString(" " + strconv.Quote(a.Mailbox))
		}
	case ActRedirect:
		if a.Copy {
			b.WriteString(" :copy")
		}
		b.WriteString(" " + strconv.Quote(a.Address))
	case ActReject, ActEreject:
		b.WriteString(" " + strconv.Quote(a.Reason))
	case ActNotify:
		nt := a.Notify
		if nt.From != "" {
			b.WriteString(" :from " + strconv.Quote(nt.From))
		}
		b.WriteString(" :importance " + strconv.Quote(nt.Importance))
		b.WriteString(" :message " + strconv.Quote(nt.Message))
		b.WriteString(" " + strconv.Quote(nt.Method))
	case ActVacation:
		v := a.Vacation
		b.WriteString(" to " + strconv.Quote(v.To))
		b.WriteString(" from " + strconv.Quote(v.From))
		b.WriteString(" subject " + strconv.Quote(v.Subject))
		if v.Period%(24*time.Hour) == 0 {
			b.WriteString(" days " + strconv.Itoa(int(v.Period/(24*time.Hour))))
		} else {
			b.WriteString(" seconds " + strconv.Itoa(int(v.Period/time.Second)))
		}
		if v.Mime {
			b.WriteString(" mime")
		}
		b.WriteString(" reason " + strconv.Quote(v.Reason))
	}
	if a.Edits > 0 {
		b.WriteString(" edits " + strconv.Itoa(a.Edits))
	}
	return b.String()
}

// String renders an edit, one line.
func (e HeaderEdit) String() string {
	if e.Add {
		s := "addheader "
		if e.Last {
			s += ":last "
		}
		return s + strconv.Quote(e.Name) + " " + strconv.Quote(e.Value)
	}
	ns := make([]string, len(e.Delete))
	for i, n := range e.Delete {
		ns[i] = strconv.Itoa(n)
	}
	return "deleteheader " + strconv.Quote(e.Name) + " " + strings.Join(ns, ",")
}

// Lines renders the whole result, one line per action, then the edits,
// then "implicit keep" when it stands.
func (r *Result) Lines() []string {
	var out []string
	for _, a := range r.Actions {
		out = append(out, a.String())
	}
	for _, e := range r.HeaderEdits {
		out = append(out, "edit "+e.String())
	}
	for _, m := range r.Marks {
		out = append(out, "mark "+strconv.Quote(m.Key))
	}
	if r.ImplicitKeep {
		s := "implicit keep"
		if len(r.ImplicitKeepFlags) > 0 {
			s += " :flags " + strconv.Quote(strings.Join(r.ImplicitKeepFlags, " "))
		}
		out = append(out, s)
	}
	return out
}

// Short renders an action for a log line, as in "sieve=fileinto:Lists.go":
// the kind and, where it has one, its target. Reasons and texts are left
// out (they are the user's).
func (a Action) Short() string {
	switch a.Kind {
	case ActFileinto:
		return "fileinto:" + a.Mailbox
	case ActRedirect:
		return "redirect:" + a.Address
	case ActVacation:
		return "vacation:" + a.Vacation.To
	case ActNotify:
		return "notify:" + a.Notify.Method
	}
	return string(a.Kind)
}

// Summary joins the Short forms of the actions with ",", and "keep" for
// the implicit keep: "fileinto:Lists.go", "redirect:a@example.org,keep".
func (r *Result) Summary() string {
	var parts []string
	for _, a := range r.Actions {
		parts = append(parts, a.Short())
	}
	if r.ImplicitKeep {
		parts = append(parts, "keep")
	}
	return strings.Join(parts, ",")
}
