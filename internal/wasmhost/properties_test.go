package wasmhost

import (
	"encoding/binary"
	"strings"
	"testing"
)

func le64(n uint64) string { return string(binary.LittleEndian.AppendUint64(nil, n)) }

func TestProperties(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{Name: "tg", RootID: "root-a", VMID: "vm-a", NodeID: "node-1"})
	paths := []string{"request.path", "request.url_path", "request.host", "request.method", "request.scheme",
		"request.id", "request.protocol", "request.headers.x-request-id", "request.headers.nope",
		"source.address", "source.port", "destination.address", "destination.port", "connection.id",
		"connection.mtls", "plugin_name", "plugin_root_id", "plugin_vm_id", "xds.cluster_name",
		"xds.route_name", "xds.node.id", "response.code", "no.such.thing"}
	cmds := []string{"rawprop:request.path"}
	for _, path := range paths {
		cmds = append(cmds, "prop:"+path)
	}
	s := p.Worker(0).NewStream(info)
	r := s.RequestHeaders(req(strings.Join(cmds, ",")), true)
	s.Close()
	out := outputs(r.Headers)
	want := map[string]string{
		"prop-request.path":                 "/api/v1?x=1/status=0",
		"prop-request.url_path":             "/api/v1/status=0",
		"prop-request.host":                 "example.com/status=0",
		"prop-request.method":               "GET/status=0",
		"prop-request.scheme":               "https/status=0",
		"prop-request.id":                   "rid-1/status=0",
		"prop-request.protocol":             "HTTP/1.1/status=0",
		"prop-request.headers.x-request-id": "rid-1/status=0",
		"prop-request.headers.nope":         "/status=1",
		"prop-source.address":               "10.1.2.3:54321/status=0",
		"prop-source.port":                  le64(54321) + "/status=0",
		"prop-destination.address":          "10.0.0.1:8080/status=0",
		"prop-destination.port":             le64(8080) + "/status=0",
		"prop-connection.id":                le64(77) + "/status=0",
		"prop-connection.mtls":              "\x00/status=0",
		"prop-plugin_name":                  "tg/status=0",
		"prop-plugin_root_id":               "root-a/status=0",
		"prop-plugin_vm_id":                 "vm-a/status=0",
		"prop-xds.cluster_name":             "backend/status=0",
		"prop-xds.route_name":               "r1/status=0",
		"prop-xds.node.id":                  "node-1/status=0",
		"prop-response.code":                "/status=1", // no response yet
		"prop-no.such.thing":                "/status=1",
		"rawprop-request.path":              "/status=1", // one dotted part is not a path
	}
	for k, w := range want {
		if out[k] != w {
			t.Errorf("%s = %q, want %q", k, out[k], w)
		}
	}
}
