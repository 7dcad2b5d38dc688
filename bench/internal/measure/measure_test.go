package measure

import (
	"testing"
	"time"
)

func TestQuantileAndMedian(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for q, want := range map[float64]time.Duration{0: time.Millisecond, 0.5: 51 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond} {
		if got := Quantile(d, q); got != want {
			t.Errorf("Quantile(%v) = %v, want %v", q, got, want)
		}
	}
	if d[0] != 100*time.Millisecond {
		t.Error("Quantile sorted the caller's slice")
	}
	if Median([]float64{3, 1, 2}) != 2 || Median([]int{4, 1, 3, 2}) != 3 || Median[int](nil) != 0 {
		t.Error("Median")
	}
	if Quantile(nil, 0.5) != 0 {
		t.Error("Quantile of nothing")
	}
}

func TestRSS(t *testing.T) {
	b, err := RSS()
	if err != nil || b < 1<<20 {
		t.Fatalf("RSS = %d, %v; want at least 1 MiB", b, err)
	}
}
