package security

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/flasher-dev/flasher/gen/flasher/v1" // registers the flasher.v1 files
	"github.com/flasher-dev/flasher/internal/auth"
)

// TestPolicyCoversEveryRPC: every method of every flasher.v1 service has an explicit rule, so
// a new RPC is a failing test here rather than a silent admin-only default.
func TestPolicyCoversEveryRPC(t *testing.T) {
	policy := auth.DefaultPolicy()
	n := 0
	protoregistry.GlobalFiles.RangeFilesByPackage("flasher.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			for j := 0; j < sd.Methods().Len(); j++ {
				m := fmt.Sprintf("/%s/%s", sd.FullName(), sd.Methods().Get(j).Name())
				n++
				if _, ok := policy[m]; !ok {
					t.Errorf("%s has no rule in auth.DefaultPolicy", m)
				}
			}
		}
		return true
	})
	if n < 15 {
		t.Fatalf("found only %d methods in flasher.v1", n)
	}
}
