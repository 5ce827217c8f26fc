package quota

import (
	"slices"
	"testing"
)

func TestLimitsString(t *testing.T) {
	for _, tc := range []struct {
		l    Limits
		want string
	}{
		{Limits{}, "0S"},
		{Limits{Bytes: 1048576}, "1048576S"},
		{Limits{Messages: 10}, "10C"},
		{Limits{Bytes: 1048576, Messages: 10}, "1048576S,10C"},
	} {
		if got := tc.l.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.l, got, tc.want)
		}
		back, err := ParseLimits(tc.want)
		if err != nil || back != tc.l {
			t.Errorf("ParseLimits(%q) = %+v, %v; want %+v", tc.want, back, err, tc.l)
		}
	}
}

func TestParseLimits(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Limits
		wantErr bool
	}{
		{"10000000S,1000C", Limits{10000000, 1000}, false},
		{"1000C,5S", Limits{5, 1000}, false},
		{"0S", Limits{}, false},
		{"", Limits{}, true},
		{"S", Limits{}, true},
		{"12X", Limits{}, true},
		{"-5S", Limits{}, true},
		{"5S,garbage", Limits{Bytes: 5}, true}, // what parsed is kept
		{"99999999999999999999S", Limits{}, true},
	} {
		got, err := ParseLimits(tc.in)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("ParseLimits(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestParseGrace(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Grace
		ok   bool
	}{
		{"10%", Grace{Percent: 10}, true},
		{"0", Grace{}, true},
		{"0%", Grace{}, true},
		{"1048576", Grace{Bytes: 1048576}, true},
		{"-1", Grace{}, false},
		{"ten%", Grace{}, false},
		{"5000%", Grace{}, false},
	} {
		got, err := ParseGrace(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("ParseGrace(%q) = %+v, %v; want %+v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestCheck(t *testing.T) {
	l := Limits{Bytes: 1000, Messages: 10}
	g := Grace{Percent: 10}
	for _, tc := range []struct {
		name string
		u    Usage
		size int64
		g    Grace
		want Verdict
	}{
		{"empty", Usage{}, 100, g, Fits},
		{"unknown size under limit", Usage{Bytes: 999}, 0, g, Fits},
		{"at byte limit", Usage{Bytes: 1000}, 0, g, OverQuota},
		{"over byte limit", Usage{Bytes: 1500}, 1, g, OverQuota},
		{"at message limit", Usage{Messages: 10}, 1, g, OverQuota},
		{"crosses within grace", Usage{Bytes: 900}, 150, g, Fits},
		{"ends exactly at limit+grace", Usage{Bytes: 900}, 200, g, Fits},
		{"crosses beyond grace", Usage{Bytes: 900}, 201, g, TooBig},
		{"no grace, crosses", Usage{Bytes: 900}, 101, Grace{}, TooBig},
		{"no grace, exactly to limit", Usage{Bytes: 900}, 100, Grace{}, Fits},
		{"absolute grace", Usage{Bytes: 900}, 600, Grace{Bytes: 500}, Fits},
	} {
		if got := Check(l, tc.u, tc.size, tc.g); got != tc.want {
			t.Errorf("%s: Check(%+v, %d) = %v, want %v", tc.name, tc.u, tc.size, got, tc.want)
		}
	}
	if got := Check(Limits{}, Usage{Bytes: 1 << 40, Messages: 1 << 30}, 1<<30, Grace{}); got != Fits {
		t.Errorf("unlimited: %v", got)
	}
}

func TestCrossed(t *testing.T) {
	l := Limits{Bytes: 1000, Messages: 100}
	th := []int{80, 90, 100}
	for _, tc := range []struct {
		before, after Usage
		want          []int
	}{
		{Usage{Bytes: 100}, Usage{Bytes: 200}, nil},
		{Usage{Bytes: 799}, Usage{Bytes: 800}, []int{80}},
		{Usage{Bytes: 800}, Usage{Bytes: 850}, nil}, // already past 80: once only
		{Usage{Bytes: 700}, Usage{Bytes: 1000}, []int{80, 90, 100}},
		{Usage{Messages: 89}, Usage{Messages: 90}, []int{90}},
		{Usage{Bytes: 950}, Usage{Bytes: 500}, nil}, // falling
	} {
		if got := Crossed(l, tc.before, tc.after, th); !slices.Equal(got, tc.want) {
			t.Errorf("Crossed(%+v → %+v) = %v, want %v", tc.before, tc.after, got, tc.want)
		}
	}
}

func TestSizeFromName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want int64
		ok   bool
	}{
		{"1700000000.M1P1Q1.host,S=1234", 1234, true},
		{"1700000000.M1P1Q1.host,S=1234:2,S", 1234, true},
		{"1700000000.M1P1Q1.host,S=1234,W=1300:2,", 1234, true},
		{"1700000000.M1P1Q1.host", 0, false},
		{"x,S=", 0, false},
		{"x,S=12a", 0, false},
		{"x,S=99999999999999999999", 0, false},
	} {
		got, ok := SizeFromName(tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("SizeFromName(%q) = %d, %v; want %d, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
