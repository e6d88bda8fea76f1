package envoy_test

import (
	"testing"

	"github.com/tokengate/tokengate/envoy"
)

// TestExampleSpec keeps envoy/examples/gateway.yaml valid.
func TestExampleSpec(t *testing.T) {
	s, err := envoy.ParseSpecFile("examples/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envoy.BootstrapYAML(s); err != nil {
		t.Fatal(err)
	}
}
