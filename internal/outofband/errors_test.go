package outofband

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want errClass
	}{
		{"dell vendor check after a BMC reboot", errors.New(`2 errors occurred: * provider: dell: Hardware not supported: failed to retrieve some items: [{"link":"/redfish/v1/Systems","error":"401: {\"error\":{\"code\":\"Base.1.8.NoValidSession\"}}"}]: error identifying device manufacturer`), classAuth},
		{"session lost without a status", errors.New(`Base.1.8.NoValidSession: There is no valid session established with the implementation.`), classAuth},
		{"gofish status", errors.New("500: internal error"), classStatus},
		{"refused", errors.New("dial tcp 127.0.1.1:8443: connect: connection refused"), classUnreachable},
		{"deadline", fmt.Errorf("poll: %w", context.DeadlineExceeded), classTimeout},
		{"shutdown", context.Canceled, classShutdown},
		{"other", errors.New("no FirmwareInstaller implementations found"), classOther},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(tc.err); got != tc.want {
				t.Fatalf("classify = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestBMCMessage: an error carrying a Redfish error body reports the BMC's sentence, not JSON.
func TestBMCMessage(t *testing.T) {
	tests := []struct{ err, want string }{
		{`2 errors occurred: * provider: dell: failed to retrieve some items: [{"link":"/redfish/v1/Systems","error":"500: {\"error\":{\"@Message.ExtendedInfo\":[{\"Message\":\"simulated any failure\",\"MessageId\":\"Base.1.8.GeneralError\"}],\"code\":\"Base.1.8.GeneralError\",\"message\":\"simulated any failure\"}}"}]`,
			"HTTP 500: simulated any failure"},
		{`400: {"error":{"@Message.ExtendedInfo":[{"Message":"Unable to parse the update package.","MessageId":"IDRAC.2.8.SUP0505"}],"code":"IDRAC.2.8.SUP0505","message":"Unable to parse the update package."}}`,
			"HTTP 400: Unable to parse the update package."},
		{"dial tcp 127.0.0.1:1: connect: connection refused", "dial tcp 127.0.0.1:1: connect: connection refused"},
	}
	for _, tc := range tests {
		if got := bmcMessage(errors.New(tc.err)); got != tc.want {
			t.Errorf("bmcMessage(%.60q…) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
