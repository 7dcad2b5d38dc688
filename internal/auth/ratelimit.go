package auth

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
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

// CallLimits limits calls by full method name, per caller: the authenticated identity when
// the call carries one, else the connection (the peer's address and port). It is the
// Authenticator's limit, and on its own the limit of a server without client authentication,
// where every caller is anonymous but -create-rate must still hold per connection.
type CallLimits struct {
	limits map[string]*RateLimiter
}

// NewCallLimits returns the limits; every rate must be positive. now is the clock (nil:
// time.Now).
func NewCallLimits(limits map[string]RateLimit, now func() time.Time) (*CallLimits, error) {
	c := &CallLimits{limits: map[string]*RateLimiter{}}
	for m, l := range limits {
		if l.PerSecond <= 0 {
			return nil, fmt.Errorf("auth: rate limit for %s: per-second rate must be positive", m)
		}
		c.limits[m] = NewRateLimiter(l, now)
	}
	return c, nil
}

// Check takes a token for the caller of fullMethod in ctx and returns ResourceExhausted, with
// the delay in a RetryInfo detail, when its bucket is empty.
func (c *CallLimits) Check(ctx context.Context, fullMethod string) error {
	l := c.limits[fullMethod]
	if l == nil {
		return nil
	}
	key, who := callerKey(ctx)
	ok, wait := l.Allow(key)
	if ok {
		return nil
	}
	st := status.Newf(codes.ResourceExhausted, "%s: rate limit for %s exceeded; retry in %s", fullMethod, who, wait.Round(time.Millisecond))
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)}); err == nil {
		st = d
	}
	return st.Err()
}

// callerKey is the bucket key of the caller and how to name it in an error.
func callerKey(ctx context.Context) (key, who string) {
	if id := FromContext(ctx); id.Name != Anonymous {
		return "id:" + id.Name, fmt.Sprintf("%q", id.Name)
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return "conn:" + p.Addr.String(), "connection " + p.Addr.String()
	}
	return Anonymous, "anonymous callers"
}

// Unary is a unary server interceptor applying the limits.
func (c *CallLimits) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := c.Check(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}
