package protocol

import (
	"errors"
	"reflect"
	"sync"
	"testing"
)

func TestWorseStatus(t *testing.T) {
	temp := NewError(451, ECTempSystem, "later")
	temp2 := NewError(452, ECTempMailboxFull, "full")
	perm := NewError(550, ECPermBadDestMailbox, "unknown")
	perm2 := NewError(554, ECPermSystem, "failed")
	plain := errors.New("plain")
	tests := []struct {
		name string
		a, b error
		want error
	}{
		{"both delivered", nil, nil, nil},
		{"failure over success", nil, perm, perm},
		{"failure over later success", perm, nil, perm},
		{"temporary over permanent", perm, temp, temp},
		{"temporary kept over later permanent", temp, perm, temp},
		{"earlier of two temporaries", temp, temp2, temp},
		{"earlier of two permanents", perm2, perm, perm2},
		{"plain error counts as temporary", perm, plain, plain},
		{"plain error kept over permanent", plain, perm, plain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := WorseStatus(tt.a, tt.b); got != tt.want {
				t.Errorf("WorseStatus(%v, %v) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

// TestDecidingStatus checks the index form of the rule and that folding a
// list pairwise with WorseStatus picks the same status.
func TestDecidingStatus(t *testing.T) {
	temp := NewError(451, ECTempSystem, "later")
	perm := NewError(550, ECPermBadDestMailbox, "unknown")
	perm2 := NewError(554, ECPermSystem, "failed")
	tests := []struct {
		name string
		in   []error
		want int
	}{
		{"empty", nil, -1},
		{"all delivered", []error{nil, nil}, -1},
		{"first permanent", []error{nil, perm, perm2}, 1},
		{"temporary after permanent", []error{perm, nil, temp}, 2},
		{"first temporary", []error{temp, perm, temp}, 0},
		{"generic error", []error{perm, errors.New("x")}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DecidingStatus(tt.in)
			if got != tt.want {
				t.Fatalf("DecidingStatus = %d, want %d", got, tt.want)
			}
			var pairwise error
			for _, err := range tt.in {
				pairwise = WorseStatus(pairwise, err)
			}
			if want := FoldStatuses(tt.in); pairwise != want {
				t.Errorf("pairwise WorseStatus = %v, FoldStatuses = %v", pairwise, want)
			}
		})
	}
}

func TestStatusList(t *testing.T) {
	temp := NewError(451, ECTempSystem, "later")
	perm := NewError(550, ECPermBadDestMailbox, "unknown")
	l := NewStatusList(4)
	var wg sync.WaitGroup
	for i, err := range []error{nil, perm, nil} {
		wg.Add(1)
		go func() { defer wg.Done(); l.Set(i, err) }()
	}
	wg.Wait()
	l.Set(1, nil) // the first Set counts
	l.Set(-1, perm)
	l.Set(4, perm)
	got := l.Finish(temp)
	want := []error{nil, perm, nil, temp}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Finish = %v, want %v", got, want)
	}
	l.Set(3, nil)
	if got := l.Finish(nil); got[3] != temp {
		t.Errorf("Set after Finish changed a status: %v", got[3])
	}
}

func TestErrorWrap(t *testing.T) {
	cause := errors.New("disk on fire")
	w := ErrMisconfigured.Wrap(cause)
	if w == ErrMisconfigured || ErrMisconfigured.Err != nil {
		t.Fatal("Wrap changed the template")
	}
	if w.Code != 451 || w.EnhancedCode != (EnhancedCode{4, 3, 5}) || w.Message != ErrMisconfigured.Message || !errors.Is(w, cause) {
		t.Errorf("Wrap = %v", w)
	}
	if got := NewError(550, EnhancedCode{}, "x").Enhanced(); got != (EnhancedCode{5, 0, 0}) {
		t.Errorf("Enhanced of a zero code = %v, want 5.0.0", got)
	}
}
