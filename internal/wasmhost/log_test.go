package wasmhost

import (
	"strings"
	"testing"
)

func TestLogLevels(t *testing.T) {
	p, sink := newTestPlugin(t, PluginConfig{LogLevel: LogWarn})
	s := p.Worker(0).NewStream(info)
	r := s.RequestHeaders(req("log:1:debug line,log:3:warn line,log:9:bad level"), true)
	s.Close()
	var sts []string
	for _, kv := range r.Headers {
		if kv[0] == "x-out-log" {
			sts = append(sts, kv[1])
		}
	}
	if strings.Join(sts, " ") != "status=0 status=0 status=2" {
		t.Errorf("proxy_log statuses %q, want OK OK BAD_ARGUMENT", sts)
	}
	log := sink.String()
	if !strings.Contains(log, "[worker-0] warn: warn line") || strings.Contains(log, "debug line") {
		t.Errorf("log filtered at warn:\n%s", log)
	}
}
