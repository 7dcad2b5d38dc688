package auth

import (
	"math"
	"sync"
	"time"
)

// RateLimit is a token bucket: PerSecond tokens are added each second up to Burst.
type RateLimit struct {
	PerSecond float64
	Burst     int
}

// RateLimiter keeps one token bucket per key (an identity name).
type RateLimiter struct {
	limit RateLimit
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds the limiter's memory; full buckets are dropped first since forgetting them
// changes nothing.
const maxBuckets = 10000

// NewRateLimiter returns a limiter; now is the clock (nil: time.Now).
func NewRateLimiter(l RateLimit, now func() time.Time) *RateLimiter {
	if now == nil {
		now = time.Now
	}
	if l.Burst < 1 {
		l.Burst = 1
	}
	return &RateLimiter{limit: l, now: now, buckets: map[string]*bucket{}}
}

// Allow takes one token from key's bucket. When the bucket is empty it returns false and how
// long until a token is available.
func (r *RateLimiter) Allow(key string) (bool, time.Duration) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.buckets[key]
	if !ok {
		if len(r.buckets) >= maxBuckets {
			r.evictLocked(now)
		}
		b = &bucket{tokens: float64(r.limit.Burst), last: now}
		r.buckets[key] = b
	}
	r.refill(b, now)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	if r.limit.PerSecond <= 0 {
		return false, time.Duration(math.MaxInt64)
	}
	wait := time.Duration((1 - b.tokens) / r.limit.PerSecond * float64(time.Second))
	return false, wait
}

func (r *RateLimiter) refill(b *bucket, now time.Time) {
	if el := now.Sub(b.last); el > 0 {
		b.tokens = math.Min(float64(r.limit.Burst), b.tokens+el.Seconds()*r.limit.PerSecond)
		b.last = now
	}
}

func (r *RateLimiter) evictLocked(now time.Time) {
	for k, b := range r.buckets {
		r.refill(b, now)
		if b.tokens >= float64(r.limit.Burst) {
			delete(r.buckets, k)
		}
	}
	if len(r.buckets) >= maxBuckets { // every bucket busy: forget all rather than grow
		clear(r.buckets)
	}
}
