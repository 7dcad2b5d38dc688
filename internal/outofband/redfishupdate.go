package outofband

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/redfish"
)

// UpdateService is what a BMC's standard Redfish UpdateService offers, as far as Flasher uses
// it.
type UpdateService struct {
	// PushURI is MultipartHttpPushUri ("" when not offered).
	PushURI string
	// SimpleUpdate is the SimpleUpdate action's target ("" when not offered) and Protocols its
	// TransferProtocol values.
	SimpleUpdate string
	Protocols    []string
	// ApplyTimes are the apply times a push may ask for (HttpPushUriOptions); empty when the
	// BMC does not say, which means its default (Immediate).
	ApplyTimes []string
	// MaxImageSize is MaxImageSizeBytes (0: not advertised).
	MaxImageSize int64
}

// Immediate reports whether a push can ask for apply time Immediate.
func (u UpdateService) Immediate() bool {
	return len(u.ApplyTimes) == 0 || slices.Contains(u.ApplyTimes, "Immediate")
}

// rawUpdateService holds the fields gofish reads but does not export.
type rawUpdateService struct {
	HTTPPushURIOptions struct {
		HTTPPushURIApplyTime struct {
			Allowable []string `json:"ApplyTime@Redfish.AllowableValues"`
		} `json:"HttpPushUriApplyTime"`
	} `json:"HttpPushUriOptions"`
	Actions struct {
		SimpleUpdate struct {
			Target string `json:"target"`
		} `json:"#UpdateService.SimpleUpdate"`
	}
}

// UpdateService reads the BMC's UpdateService (one request) through gofish.
func (ss *Session) UpdateService(ctx context.Context) (UpdateService, error) {
	c, err := ss.redfishClient(ctx)
	if err != nil {
		return UpdateService{}, err
	}
	us, err := within(ctx, ss, "GET UpdateService", ss.to.Call, func(context.Context) (*redfish.UpdateService, error) {
		return c.GetService().UpdateService()
	})
	if err != nil {
		if classify(err) != classStatus {
			ss.dropRedfish()
		}
		return UpdateService{}, fmt.Errorf("read the UpdateService: %w", err)
	}
	var raw rawUpdateService
	if err := json.Unmarshal(us.RawData, &raw); err != nil {
		return UpdateService{}, fmt.Errorf("read the UpdateService: %w", err)
	}
	return UpdateService{
		PushURI: us.MultipartHTTPPushURI, SimpleUpdate: raw.Actions.SimpleUpdate.Target, Protocols: us.TransferProtocol,
		ApplyTimes: raw.HTTPPushURIOptions.HTTPPushURIApplyTime.Allowable, MaxImageSize: int64(us.MaxImageSizeBytes),
	}, nil
}

// PushParams are the UpdateParameters of a multipart push (DMTF UpdateService).
type PushParams struct {
	Targets   []string `json:"Targets,omitempty"`
	ApplyTime string   `json:"@Redfish.OperationApplyTime,omitempty"`
}

// busyError is a 503 from the BMC, with the wait it asked for (Retry-After; 0 when none).
type busyError struct {
	err   error
	after time.Duration
}

func (e *busyError) Error() string { return e.err.Error() }
func (e *busyError) Unwrap() error { return e.err }

// retryAfterOf reads a Retry-After header: seconds or an HTTP date; 0 when absent.
func retryAfterOf(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// retryAfterTransport remembers the Retry-After of the last 503, which gofish's errors drop.
type retryAfterTransport struct {
	rt    http.RoundTripper
	after atomic.Int64
}

func (t *retryAfterTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusServiceUnavailable {
		t.after.Store(int64(retryAfterOf(resp.Header, time.Now())))
	}
	return resp, err
}

// uploadClient is a gofish client for one upload: HTTP basic authentication (no session to
// leak), the session's verified transport, and the upload deadline as its HTTP timeout.
func (ss *Session) uploadClient(ctx context.Context) (*gofish.APIClient, *retryAfterTransport, *http.Client, error) {
	creds, err := ss.creds(ctx)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("credentials: %w", err)
	}
	hc, err := ss.target.httpClient(ss.held)
	if err != nil {
		return nil, nil, nil, err
	}
	rt := &retryAfterTransport{rt: hc.Transport}
	hc.Transport, hc.Timeout = rt, ss.to.Upload
	c, err := gofish.ConnectContext(context.Background(), gofish.ClientConfig{
		Endpoint: ss.target.Scheme + "://" + ss.target.Key(), Username: creds.Username, Password: creds.Password,
		BasicAuth: true, HTTPClient: hc})
	if err != nil {
		hc.CloseIdleConnections()
		return nil, nil, nil, err
	}
	return c, rt, hc, nil
}

// Push sends an image to the BMC's MultipartHttpPushUri and returns the task that installs it
// (its id, or its URI when it lives outside TaskService/Tasks; "" when the BMC named none). Like
// Upload it is not interrupted by ctx, only abandoned at Flasher's deadline; done is called once
// the request really returned. A 503 comes back as *busyError with the BMC's Retry-After.
func (ss *Session) Push(ctx context.Context, uri string, params PushParams, f *os.File, done func()) (string, error) {
	body, err := json.Marshal(params)
	if err != nil {
		done()
		return "", err
	}
	ref, err := within(context.WithoutCancel(ctx), ss, "upload", ss.to.Upload, func(context.Context) (string, error) {
		defer done()
		c, rt, hc, err := ss.uploadClient(ctx)
		if err != nil {
			return "", err
		}
		defer hc.CloseIdleConnections()
		resp, err := c.PostMultipart(uri, map[string]io.Reader{"UpdateParameters": strings.NewReader(string(body)), "UpdateFile": f})
		if err != nil {
			if httpStatus(err) == http.StatusServiceUnavailable {
				return "", &busyError{err: err, after: time.Duration(rt.after.Load())}
			}
			return "", err
		}
		defer resp.Body.Close()
		return taskRefOf(resp), nil
	})
	return ref, err
}

// tasksPrefix is where standard task resources live.
const tasksPrefix = "/redfish/v1/TaskService/Tasks/"

// taskRefOf reads the task an accepted update created: the Task in the body (DMTF: a 202
// carries it), else the Location header (a Task Monitor or the Task).
func taskRefOf(resp *http.Response) string {
	var t struct {
		ODataID string `json:"@odata.id"`
		ID      string `json:"Id"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&t)
	for _, u := range []string{t.ODataID, resp.Header.Get("Location")} {
		if pu, err := url.Parse(u); err == nil && pu.Path != "" {
			u = pu.Path
		}
		u = strings.TrimSuffix(strings.TrimSuffix(u, "/"), "/Monitor")
		if id, ok := strings.CutPrefix(u, tasksPrefix); ok && id != "" && !strings.Contains(id, "/") {
			return id
		}
		if u != "" {
			return u
		}
	}
	return ""
}

// errNoUpdateMethod says the BMC's UpdateService offers nothing Flasher can send an image with.
var errNoUpdateMethod = errors.New("the BMC's UpdateService offers neither MultipartHttpPushUri nor SimpleUpdate over HTTPS")
