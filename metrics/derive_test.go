package metrics

import (
	"testing"
	"time"
)

func TestDerive(t *testing.T) {
	m := New()
	m.Derive("/orders/", "cached", time.Millisecond)
	m.Derive("/orders/", "cached", time.Millisecond)
	m.Derive("/orders/", "success", time.Millisecond)
	m.Derive("/orders/", "token_unavailable", time.Millisecond)
	got := map[string]float64{}
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range mt.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			if c := mt.GetCounter(); c != nil {
				got[key] = c.GetValue()
			}
		}
	}
	for key, want := range map[string]float64{
		"tokenhandler_derived_token_cache_total,result=hit,route=/orders/":        2,
		"tokenhandler_derived_token_cache_total,result=miss,route=/orders/":       2,
		"tokenhandler_derivations_total,outcome=success,route=/orders/":           1,
		"tokenhandler_derivations_total,outcome=token_unavailable,route=/orders/": 1,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
	var nilM *Metrics
	nilM.Derive("/x/", "cached", 0) // no panic
}
