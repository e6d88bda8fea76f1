package main

import (
	"os"
	"strings"
	"testing"
)

func TestRateLimitCommand(t *testing.T) {
	spec := "../../testdata/golden/global.spec.yaml"
	istio := "../../testdata/ratelimit/istio-plugin.json"
	golden := func(name string) string {
		b, err := os.ReadFile("../../testdata/golden/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	istioConfig, err := os.ReadFile(istio)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, stdin string
		args        []string
		code        int
		out, errOut string
	}{
		{name: "spec", args: []string{"-spec", spec}, out: golden("global.ratelimit.yaml")},
		{name: "config on stdin, manifests", stdin: string(istioConfig), args: []string{"-config", "-", "-k8s"}, out: golden("ratelimit.k8s.yaml")},
		{name: "wrong namespace", args: []string{"-config", istio, "-k8s", "-namespace", "infra"}, code: exitInvalid,
			errOut: `use "outbound|8081||ratelimit.infra.svc.cluster.local"`},
		{name: "local rules only", stdin: `{"rules":[{"name":"a","key":["path"],"capacity":1,"refill":1,"interval":"1s"}]}`,
			args: []string{"-config", "-"}, code: exitInvalid, errOut: "no global rule"},
		{name: "both inputs", args: []string{"-config", istio, "-spec", spec}, code: exitUsage, errOut: "exactly one of"},
		{name: "k8s flag without -k8s", args: []string{"-config", istio, "-replicas", "3"}, code: exitUsage, errOut: "go with -k8s"},
		{name: "missing file", args: []string{"-config", "nope.json"}, code: exitUsage, errOut: "nope.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tc.stdin, append([]string{"ratelimit"}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, tc.code, errOut)
			}
			if tc.out != "" && out != tc.out {
				t.Errorf("stdout differs from the golden file:\n%s", out)
			}
			if !strings.Contains(errOut, tc.errOut) {
				t.Errorf("stderr %q lacks %q", errOut, tc.errOut)
			}
		})
	}
}
