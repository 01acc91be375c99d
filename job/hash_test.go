package job

import (
	"encoding/json"
	"testing"
)

// TestHashEmptyIsAbsent: a list or map left out and the same one written
// empty give one fingerprint (a spec saved by statjob spec, or frozen in
// run.json and loaded back, writes [] where the default has none); JSON
// without an empty list or map hashes as json.Marshal writes it, so
// fingerprints of specs without one did not change.
func TestHashEmptyIsAbsent(t *testing.T) {
	type cfg struct {
		Stop   []int          `json:"stop"`
		Prices map[string]int `json:"prices"`
		Nested [][]string     `json:"nested"`
		Note   string         `json:"note"`
	}
	same := func(a, b any) bool {
		ha, err1 := Hash("v1", a)
		hb, err2 := Hash("v1", b)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		return ha == hb
	}
	if !same(cfg{}, cfg{Stop: []int{}, Prices: map[string]int{}}) {
		t.Error("an empty list or map hashes differently from an absent one")
	}
	if !same(cfg{Nested: [][]string{nil}}, cfg{Nested: [][]string{{}}}) {
		t.Error("an empty list inside a list hashes differently from null")
	}
	if same(cfg{Stop: []int{1}}, cfg{}) || same(cfg{Note: "[]"}, cfg{}) || same(cfg{Note: "[]"}, cfg{Note: "null"}) {
		t.Error("different settings hash alike")
	}
	// Byte for byte as json.Marshal writes it, escapes and key order kept.
	for _, v := range []any{
		cfg{Stop: []int{1, 2}, Prices: map[string]int{"b": 1, "a": 2}, Nested: [][]string{{"x"}}, Note: "a<b>&\"c\"\n[]{}é\u2028"},
		map[string]any{"z": 1.5e300, "a": []any{true, false, nil, -0.0, 12345678901234567890.0}, "m": map[string]any{"k": "v"}},
	} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := emptyAsNull(b)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(b) {
			t.Errorf("rewritten:\n%s\nwant:\n%s", got, b)
		}
	}
	got, err := emptyAsNull([]byte(`{"a":[],"b":{},"c":[[],{"d":[]}],"e":"[]"}`))
	if err != nil || string(got) != `{"a":null,"b":null,"c":[null,{"d":null}],"e":"[]"}` {
		t.Errorf("emptyAsNull = %s, %v", got, err)
	}
}
