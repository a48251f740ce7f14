package console

import (
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

func readKeys(t testing.TB, in string) []key {
	kr := newKeyReader(strings.NewReader(in))
	var keys []key
	for range len(in) + 1 {
		k, err := kr.next()
		if errors.Is(err, io.EOF) {
			return keys
		}
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	t.Fatalf("more keys than bytes in %q", in)
	return nil
}

func TestKeyReaderDecodesKeysAndPastes(t *testing.T) {
	got := readKeys(t, "hé\x7f\x15\x1b[A\x1bOP\x03\x04\x1b[200~one\r\ntwo\rthree\x1b[201~\r")
	want := []key{{keyText, "hé"}, {kind: keyBackspace}, {kind: keyKill}, {kind: keyInterrupt}, {kind: keyEOF},
		{keyPaste, "one\ntwo\nthree"}, {kind: keyEnter}}
	if len(got) != len(want) {
		t.Fatalf("keys %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("key %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestKeyReaderCapsAPaste(t *testing.T) {
	got := readKeys(t, "\x1b[200~"+strings.Repeat("x", MaxMessage+10)+"\x1b[201~y")
	if len(got) != 2 || got[0].kind != keyPaste || len(got[0].text) != MaxMessage+1 || got[1].text != "y" {
		t.Fatalf("got %d keys; first %v of %d bytes", len(got), got[0].kind, len(got[0].text))
	}
}

// Whatever a terminal (or a paste) sends, keys are valid text, pastes are
// bounded, and the reader ends.
func FuzzKeyReader(f *testing.F) {
	for _, s := range []string{"hi\r", "\x1b[200~a\rb\x1b[201~\r", "\x1b[", "\x1b", "\xe4\xb8", "\x1b[200~\x1b[20", "\x03\x04\x7f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		for _, k := range readKeys(t, in) {
			if !utf8.ValidString(k.text) || len(k.text) > MaxMessage+1 {
				t.Fatalf("key %v with text %q", k.kind, k.text)
			}
			if k.kind == keyText && strings.ContainsAny(k.text, "\x1b\r\n\x03\x04\x7f") {
				t.Fatalf("control bytes in typed text %q", k.text)
			}
		}
	})
}

func readLines(t testing.TB, in string) (lines []string, refused int) {
	lr := newLineReader(strings.NewReader(in))
	for range len(in) + 1 {
		line, tooLong, err := lr.next()
		if errors.Is(err, io.EOF) {
			return lines, refused
		}
		if err != nil {
			t.Fatal(err)
		}
		if tooLong {
			refused++
			continue
		}
		lines = append(lines, line)
	}
	t.Fatalf("more lines than bytes in %q", in)
	return nil, 0
}

func TestLineReaderRefusesOverLongLines(t *testing.T) {
	lines, refused := readLines(t, "a\r\n"+strings.Repeat("x", MaxMessage+1)+"\n"+strings.Repeat("y", MaxMessage)+"\nb")
	if refused != 1 || len(lines) != 3 || lines[0] != "a" || len(lines[1]) != MaxMessage || lines[2] != "b" {
		t.Fatalf("refused %d, %d lines", refused, len(lines))
	}
}

// Short input splits into its lines, as strings.Split does.
func FuzzLineReader(f *testing.F) {
	for _, s := range []string{"", "a", "a\n", "a\r\nb", "\n\n", "x\r"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		lines, refused := readLines(t, in)
		want := strings.Split(strings.TrimSuffix(in, "\n"), "\n")
		if in == "" {
			want = nil
		}
		for i := range want {
			want[i] = strings.TrimRight(want[i], "\r\n")
		}
		if refused != 0 || strings.Join(lines, "\n") != strings.Join(want, "\n") || len(lines) != len(want) {
			t.Fatalf("lines %q, want %q", lines, want)
		}
	})
}
