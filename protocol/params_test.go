package protocol

import (
	"math"
	"reflect"
	"strings"
	"testing"
)

// allParams is a session that advertised every extension.
var allParams = paramSet{esmtp: true, smtputf8: true, dsn: true, chunking: true, size: true, auth: true}

// without returns allParams with one extension switched off.
func without(field string) paramSet {
	p := allParams
	switch field {
	case "esmtp":
		p.esmtp = false
	case "smtputf8":
		p.smtputf8 = false
	case "dsn":
		p.dsn = false
	case "chunking":
		p.chunking = false
	case "size":
		p.size = false
	case "auth":
		p.auth = false
	default:
		panic("unknown field " + field)
	}
	return p
}

func TestParseMailParams(t *testing.T) {
	tests := []struct {
		name string
		in   string
		set  paramSet
		want MailParams
	}{
		{"none", "", allParams, MailParams{}},
		{"none after HELO", "", without("esmtp"), MailParams{}},
		{"only spaces", "   ", allParams, MailParams{}},
		{"size", " SIZE=1000", allParams, MailParams{Size: 1000}},
		{"size lower case", " size=0", allParams, MailParams{Size: 0}},
		{"size max int64", " SIZE=9223372036854775807", allParams, MailParams{Size: math.MaxInt64}},
		{"size overflow", " SIZE=9223372036854775808", allParams, MailParams{Size: math.MaxInt64}},
		{"size 20 digits", " SIZE=99999999999999999999", allParams, MailParams{Size: math.MaxInt64}},
		{"size 21 digits", " SIZE=000000000000000000001", allParams, MailParams{Size: math.MaxInt64}},
		{"size leading zeros", " SIZE=00042", allParams, MailParams{Size: 42}},
		{"body 7bit", " BODY=7BIT", allParams, MailParams{Body: Body7Bit}},
		{"body 8bitmime any case", " body=8bitMIME", allParams, MailParams{Body: Body8BitMIME}},
		{"body 8bitmime without chunking", " BODY=8BITMIME", without("chunking"), MailParams{Body: Body8BitMIME}},
		{"body binarymime", " BODY=BINARYMIME", allParams, MailParams{Body: BodyBinaryMIME}},
		{"smtputf8", " SMTPUTF8", allParams, MailParams{SMTPUTF8: true}},
		{"ret full", " RET=FULL", allParams, MailParams{Return: DSNReturnFull}},
		{"ret hdrs", " ret=hdrs", allParams, MailParams{Return: DSNReturnHeaders}},
		{"envid", " ENVID=QQ314159", allParams, MailParams{EnvelopeID: "QQ314159"}},
		{"envid xtext", " ENVID=a+2Bb+3Dc+20d", allParams, MailParams{EnvelopeID: "a+b=c d"}},
		{"envid 100", " ENVID=" + strings.Repeat("e", 100), allParams, MailParams{EnvelopeID: strings.Repeat("e", 100)}},
		{"auth null", " AUTH=<>", allParams, MailParams{Auth: "<>"}},
		{"auth xtext", " AUTH=user+2Bx@example.com", allParams, MailParams{Auth: "user+x@example.com"}},
		{"all", " SIZE=10 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id1 AUTH=<>", allParams,
			MailParams{Size: 10, Body: Body8BitMIME, SMTPUTF8: true, Return: DSNReturnHeaders, EnvelopeID: "id1", Auth: "<>"}},
		{"extra spaces", "  SIZE=10   SMTPUTF8  ", allParams, MailParams{Size: 10, SMTPUTF8: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMailParams(tc.in, tc.set)
			if err != nil {
				t.Fatalf("parseMailParams(%q) error: %v", tc.in, err)
			}
			if got != tc.want {
				t.Fatalf("parseMailParams(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

// paramErrCase is a parameter string that must be refused with code and
// message; the enhanced code is always 5.5.4.
type paramErrCase struct {
	name string
	in   string
	set  paramSet
	code int
	msg  string
}

func checkParamErr(t *testing.T, tc paramErrCase, err error) {
	t.Helper()
	e := AsError(err)
	if e == nil || e.Code != tc.code || e.EnhancedCode != ECPermInvalidArgs || e.Message != tc.msg {
		t.Fatalf("%q: error %v; want %d 5.5.4 %q", tc.in, err, tc.code, tc.msg)
	}
}

func TestParseMailParamsErrors(t *testing.T) {
	const syn, unsup = CodeParamSyntax, CodeParamsNotRecog
	tests := []paramErrCase{
		{"no space before", "SIZE=1", allParams, syn, "Bad parameter syntax"},
		{"after HELO", " SIZE=1", without("esmtp"), unsup, "Unsupported parameter SIZE"},
		{"after HELO any", " BODY=8BITMIME", without("esmtp"), unsup, "Unsupported parameter BODY"},
		{"unknown", " FOO=bar", allParams, unsup, "Unsupported parameter FOO"},
		{"unknown flag", " x-foo", allParams, unsup, "Unsupported parameter X-FOO"},
		{"unknown long", " " + strings.Repeat("k", 40), allParams, unsup, "Unsupported parameter " + strings.Repeat("K", 32) + "..."},
		{"rcpt keyword on mail", " NOTIFY=NEVER", allParams, unsup, "Unsupported parameter NOTIFY"},
		{"size not advertised", " SIZE=1", without("size"), unsup, "Unsupported parameter SIZE"},
		{"smtputf8 not advertised", " SMTPUTF8", without("smtputf8"), unsup, "Unsupported parameter SMTPUTF8"},
		{"ret not advertised", " RET=FULL", without("dsn"), unsup, "Unsupported parameter RET"},
		{"envid not advertised", " ENVID=x", without("dsn"), unsup, "Unsupported parameter ENVID"},
		{"auth not advertised", " AUTH=<>", without("auth"), unsup, "Unsupported parameter AUTH"},
		{"binarymime without chunking", " BODY=BINARYMIME", without("chunking"), unsup, "Unsupported parameter BODY=BINARYMIME"},
		{"keyword empty", " =x", allParams, syn, "Bad parameter syntax"},
		{"keyword leading hyphen", " -SIZE=1", allParams, syn, "Bad parameter syntax"},
		{"keyword underscore", " SI_ZE=1", allParams, syn, "Bad parameter syntax"},
		{"keyword non-ascii", " SIZÉ=1", allParams, syn, "Bad parameter syntax"},
		{"value empty", " SIZE=", allParams, syn, "Bad value for parameter SIZE"},
		{"value with equals", " AUTH=a=b", allParams, syn, "Bad value for parameter AUTH"},
		{"value control", " ENVID=a\x01", allParams, syn, "Bad value for parameter ENVID"},
		{"value DEL", " ENVID=a\x7f", allParams, syn, "Bad value for parameter ENVID"},
		{"value invalid utf8", " ENVID=\xff", allParams, syn, "Bad value for parameter ENVID"},
		{"size missing", " SIZE", allParams, syn, "Missing value for parameter SIZE"},
		{"size letters", " SIZE=12a", allParams, syn, "Bad SIZE value"},
		{"size negative", " SIZE=-1", allParams, syn, "Bad SIZE value"},
		{"size duplicate", " SIZE=1 size=2", allParams, syn, "Duplicate parameter SIZE"},
		{"body missing", " BODY", allParams, syn, "Missing value for parameter BODY"},
		{"body unknown", " BODY=9BIT", allParams, syn, "Bad BODY value"},
		{"body duplicate", " BODY=7BIT BODY=8BITMIME", allParams, syn, "Duplicate parameter BODY"},
		{"smtputf8 value", " SMTPUTF8=yes", allParams, syn, "SMTPUTF8 takes no value"},
		{"smtputf8 duplicate", " SMTPUTF8 SMTPUTF8", allParams, syn, "Duplicate parameter SMTPUTF8"},
		{"ret bad", " RET=ALL", allParams, syn, "Bad RET value"},
		{"ret missing", " RET", allParams, syn, "Missing value for parameter RET"},
		{"ret duplicate", " RET=FULL RET=HDRS", allParams, syn, "Duplicate parameter RET"},
		{"envid too long", " ENVID=" + strings.Repeat("e", 101), allParams, syn, "ENVID too long (100 characters max)"},
		{"envid truncated hex", " ENVID=a+2", allParams, syn, "Bad ENVID value"},
		{"envid lower hex", " ENVID=a+2b", allParams, syn, "Bad ENVID value"},
		{"envid control", " ENVID=a+0D", allParams, syn, "Bad ENVID value"},
		{"envid non-ascii", " ENVID=é", allParams, syn, "Bad ENVID value"},
		{"envid duplicate", " ENVID=a ENVID=b", allParams, syn, "Duplicate parameter ENVID"},
		{"auth bad xtext", " AUTH=a+zz", allParams, syn, "Bad AUTH value"},
		{"auth control", " AUTH=a+00", allParams, syn, "Bad AUTH value"},
		{"auth missing", " AUTH", allParams, syn, "Missing value for parameter AUTH"},
		{"auth duplicate", " AUTH=<> AUTH=<>", allParams, syn, "Duplicate parameter AUTH"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMailParams(tc.in, tc.set)
			checkParamErr(t, tc, err)
			if got != (MailParams{}) {
				t.Errorf("returned %+v with its error", got)
			}
		})
	}
}

func TestParseRcptParams(t *testing.T) {
	tests := []struct {
		name string
		in   string
		set  paramSet
		want RcptParams
	}{
		{"none", "", allParams, RcptParams{}},
		{"none after HELO", "", without("esmtp"), RcptParams{}},
		{"notify never", " NOTIFY=NEVER", allParams, RcptParams{Notify: []DSNNotify{DSNNotifyNever}}},
		{"notify never lower", " notify=never", allParams, RcptParams{Notify: []DSNNotify{DSNNotifyNever}}},
		{"notify list", " NOTIFY=success,FAILURE,Delay", allParams,
			RcptParams{Notify: []DSNNotify{DSNNotifySuccess, DSNNotifyFailure, DSNNotifyDelay}}},
		{"notify order kept", " NOTIFY=DELAY,SUCCESS", allParams, RcptParams{Notify: []DSNNotify{DSNNotifyDelay, DSNNotifySuccess}}},
		{"notify repeat kept once", " NOTIFY=FAILURE,FAILURE", allParams, RcptParams{Notify: []DSNNotify{DSNNotifyFailure}}},
		{"orcpt", " ORCPT=rfc822;user+40example.com", allParams,
			RcptParams{OriginalRecipientType: "rfc822", OriginalRecipient: "user@example.com"}},
		{"orcpt type as written", " ORCPT=UTF-8;a@b.c", allParams, RcptParams{OriginalRecipientType: "UTF-8", OriginalRecipient: "a@b.c"}},
		{"orcpt space decoded", " ORCPT=rfc822;\"a+20b\"@c", allParams, RcptParams{OriginalRecipientType: "rfc822", OriginalRecipient: `"a b"@c`}},
		{"both", " NOTIFY=SUCCESS ORCPT=rfc822;a@b", allParams,
			RcptParams{Notify: []DSNNotify{DSNNotifySuccess}, OriginalRecipientType: "rfc822", OriginalRecipient: "a@b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRcptParams(tc.in, tc.set)
			if err != nil {
				t.Fatalf("parseRcptParams(%q) error: %v", tc.in, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("parseRcptParams(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseRcptParamsErrors(t *testing.T) {
	const syn, unsup = CodeParamSyntax, CodeParamsNotRecog
	tests := []paramErrCase{
		{"no space before", "NOTIFY=NEVER", allParams, syn, "Bad parameter syntax"},
		{"after HELO", " NOTIFY=NEVER", without("esmtp"), unsup, "Unsupported parameter NOTIFY"},
		{"notify not advertised", " NOTIFY=NEVER", without("dsn"), unsup, "Unsupported parameter NOTIFY"},
		{"orcpt not advertised", " ORCPT=rfc822;a@b", without("dsn"), unsup, "Unsupported parameter ORCPT"},
		{"mail keyword on rcpt", " SIZE=1", allParams, unsup, "Unsupported parameter SIZE"},
		{"unknown", " XYZ", allParams, unsup, "Unsupported parameter XYZ"},
		{"bad syntax", " b= NOTIFY=NEVER", allParams, syn, "Bad value for parameter B"},
		{"notify missing", " NOTIFY", allParams, syn, "Missing value for parameter NOTIFY"},
		{"notify empty", " NOTIFY=", allParams, syn, "Bad value for parameter NOTIFY"},
		{"notify never first", " NOTIFY=NEVER,SUCCESS", allParams, syn, "NOTIFY=NEVER must be alone"},
		{"notify never last", " NOTIFY=SUCCESS,NEVER", allParams, syn, "NOTIFY=NEVER must be alone"},
		{"notify trailing comma", " NOTIFY=SUCCESS,", allParams, syn, "Bad NOTIFY value"},
		{"notify leading comma", " NOTIFY=,SUCCESS", allParams, syn, "Bad NOTIFY value"},
		{"notify unknown", " NOTIFY=ALWAYS", allParams, syn, "Bad NOTIFY value"},
		{"notify duplicate", " NOTIFY=NEVER notify=NEVER", allParams, syn, "Duplicate parameter NOTIFY"},
		{"orcpt missing", " ORCPT", allParams, syn, "Missing value for parameter ORCPT"},
		{"orcpt no type", " ORCPT=;a@b", allParams, syn, "Bad ORCPT value"},
		{"orcpt no semicolon", " ORCPT=rfc822", allParams, syn, "Bad ORCPT value"},
		{"orcpt empty address", " ORCPT=rfc822;", allParams, syn, "Bad ORCPT value"},
		{"orcpt bad type", " ORCPT=rf(c;a@b", allParams, syn, "Bad ORCPT value"},
		{"orcpt bad xtext", " ORCPT=rfc822;a+4", allParams, syn, "Bad ORCPT value"},
		{"orcpt control", " ORCPT=rfc822;a+0Ab", allParams, syn, "Bad ORCPT value"},
		{"orcpt utf8", " ORCPT=rfc822;ü@b", allParams, syn, "Bad ORCPT value"},
		{"orcpt duplicate", " ORCPT=rfc822;a ORCPT=rfc822;b", allParams, syn, "Duplicate parameter ORCPT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRcptParams(tc.in, tc.set)
			checkParamErr(t, tc, err)
			if !reflect.DeepEqual(got, RcptParams{}) {
				t.Errorf("returned %+v with its error", got)
			}
		})
	}
}

func TestXtext(t *testing.T) {
	tests := []struct {
		name    string
		encoded string
		decoded string
	}{
		{"empty", "", ""},
		{"plain", "user@example.com", "user@example.com"},
		{"plus", "a+2Bb", "a+b"},
		{"equals", "a+3Db", "a=b"},
		{"space", "a+20b", "a b"},
		{"controls", "+00+0D+0A", "\x00\r\n"},
		{"high octets", "+C3+BC", "ü"},
		{"all printable", "!\"#$%&'()*,-./09:;<>?@AZ[\\]^_`az{|}~", "!\"#$%&'()*,-./09:;<>?@AZ[\\]^_`az{|}~"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeXtext(tc.encoded)
			if err != nil || got != tc.decoded {
				t.Fatalf("decodeXtext(%q) = %q, %v; want %q", tc.encoded, got, err, tc.decoded)
			}
			if enc := encodeXtext(tc.decoded); enc != tc.encoded {
				t.Fatalf("encodeXtext(%q) = %q, want %q", tc.decoded, enc, tc.encoded)
			}
		})
	}
}

func TestDecodeXtextErrors(t *testing.T) {
	for _, in := range []string{"+", "a+", "+4", "+4G", "+4a", "+a4", "+G0", "a b", "a=b", "\x7f", "\x1f", "é", "+2B+"} {
		t.Run(in, func(t *testing.T) {
			got, err := decodeXtext(in)
			if err == nil {
				t.Fatalf("decodeXtext(%q) = %q, want error", in, got)
			}
			if e := AsError(err); e == nil || e.Code != CodeParamSyntax || e.EnhancedCode != ECPermInvalidArgs {
				t.Fatalf("decodeXtext(%q) error %v, want 501 5.5.4", in, err)
			}
		})
	}
}

// TestXtextRoundTrip encodes every octet and checks that the result is
// valid xtext that decodes back.
func TestXtextRoundTrip(t *testing.T) {
	var all strings.Builder
	for c := 0; c < 256; c++ {
		all.WriteByte(byte(c))
	}
	for _, s := range []string{all.String(), "plain", "a+b=c", "ü\x00"} {
		enc := encodeXtext(s)
		for i := 0; i < len(enc); i++ {
			if c := enc[i]; c < 33 || c > 126 || c == '=' {
				t.Fatalf("encodeXtext(%q) = %q contains %q", s, enc, c)
			}
		}
		dec, err := decodeXtext(enc)
		if err != nil || dec != s {
			t.Fatalf("round trip of %q: %q, %v", s, dec, err)
		}
	}
}

func TestParseParamsAllocs(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := parseMailParams(" SIZE=12345 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=abc AUTH=<>", allParams); err != nil {
			t.Fatal(err)
		}
		if _, err := parseRcptParams(" ORCPT=rfc822;a@b.c", allParams); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations, want 0", allocs)
	}
}
