package envoy_test

import (
	"bytes"
	"cmp"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/tokengate/tokengate/envoy"
)

func TestIstioClusterName(t *testing.T) {
	for _, tc := range []struct {
		service, namespace string
		port               uint32
		want               string
	}{
		{"ratelimit", "default", 8081, "outbound|8081||ratelimit.default.svc.cluster.local"},
		{"rls", "infra", 9000, "outbound|9000||rls.infra.svc.cluster.local"},
	} {
		if got := envoy.IstioClusterName(tc.service, tc.namespace, tc.port); got != tc.want {
			t.Errorf("IstioClusterName(%q, %q, %d) = %q, want %q", tc.service, tc.namespace, tc.port, got, tc.want)
		}
	}
}

// TestRateLimitManifests compares the manifests with the golden file and
// checks that they hang together: the ConfigMap holds RateLimitConfig's file,
// each Service selects its Deployment's pods, the gRPC port is named so Istio
// speaks HTTP/2 to it, and the service reaches Redis by its Service.
func TestRateLimitManifests(t *testing.T) {
	filter := readFile(t, "testdata/ratelimit/istio-plugin.json")
	got, err := envoy.RateLimitManifests(filter, envoy.RateLimitK8sOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, filepath.Join("testdata/golden", "ratelimit.k8s.yaml"), got)

	conf, err := envoy.RateLimitConfig(filter)
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]map[string]any{}
	for _, doc := range bytes.Split(got, []byte("\n---\n"))[1:] {
		var m map[string]any
		if err := yaml.UnmarshalStrict(doc, &m); err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		meta := m["metadata"].(map[string]any)
		if meta["namespace"] != "default" {
			t.Errorf("%s %s: namespace %v", m["kind"], meta["name"], meta["namespace"])
		}
		objs[m["kind"].(string)+"/"+meta["name"].(string)] = m
	}
	if len(objs) != 5 {
		t.Fatalf("got %d objects, want 5: %v", len(objs), objs)
	}
	cm := objs["ConfigMap/ratelimit-config"]
	if cm == nil || cm["data"].(map[string]any)["config.yaml"] != string(conf) {
		t.Errorf("the ConfigMap does not hold RateLimitConfig's file: %v", cm)
	}
	for _, name := range []string{"ratelimit", "ratelimit-redis"} {
		svc, dep := objs["Service/"+name], objs["Deployment/"+name]
		if svc == nil || dep == nil {
			t.Fatalf("missing Service or Deployment %s", name)
		}
		sel := svc["spec"].(map[string]any)["selector"].(map[string]any)
		labels := dep["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)["labels"].(map[string]any)
		if sel["app"] != name || labels["app"] != name {
			t.Errorf("Service %s selects %v, its pods are labelled %v", name, sel, labels)
		}
	}
	port := objs["Service/ratelimit"]["spec"].(map[string]any)["ports"].([]any)[0].(map[string]any)
	if port["name"] != "grpc" || port["appProtocol"] != "grpc" || port["port"] != float64(envoy.RateLimitGRPCPort) {
		t.Errorf("ratelimit Service port %v: want grpc, appProtocol grpc, %d", port, envoy.RateLimitGRPCPort)
	}
	if !strings.Contains(string(got), "value: ratelimit-redis:6379") {
		t.Error("the service does not reach Redis through its Service")
	}
}

// TestRateLimitManifestsAreKubernetesObjects decodes every manifest strictly
// into Kubernetes' own API types (k8s.io/api), so a misspelt or mistyped field
// fails here rather than at kubectl apply, and checks what refers to what by
// name: the mounted ConfigMap exists, the probes and Services use ports the
// containers declare. Default and non-default options alike.
func TestRateLimitManifestsAreKubernetesObjects(t *testing.T) {
	istio := string(readFile(t, "testdata/ratelimit/istio-plugin.json"))
	for _, tc := range []struct {
		name     string
		opts     envoy.RateLimitK8sOptions
		replicas int32
	}{
		{"defaults", envoy.RateLimitK8sOptions{}, envoy.DefaultRateLimitReplicas},
		{"options", envoy.RateLimitK8sOptions{Namespace: "infra", Name: "rls", Replicas: 3, Image: "registry.example/rl:1", RedisImage: "redis:8"}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			ns, name := cmp.Or(o.Namespace, "default"), cmp.Or(o.Name, envoy.DefaultRateLimitName)
			filter := strings.NewReplacer(
				envoy.IstioClusterName(envoy.DefaultRateLimitName, "default", envoy.RateLimitGRPCPort), envoy.IstioClusterName(name, ns, envoy.RateLimitGRPCPort),
				envoy.IstioServiceHost(envoy.DefaultRateLimitName, "default"), envoy.IstioServiceHost(name, ns),
			).Replace(istio)
			got, err := envoy.RateLimitManifests([]byte(filter), o)
			if err != nil {
				t.Fatal(err)
			}
			var (
				configMaps = map[string]*corev1.ConfigMap{}
				deps       = map[string]*appsv1.Deployment{}
				services   = map[string]*corev1.Service{}
			)
			for _, doc := range bytes.Split(got, []byte("\n---\n"))[1:] {
				var meta struct {
					APIVersion string `json:"apiVersion"`
					Kind       string `json:"kind"`
				}
				if err := yaml.Unmarshal(doc, &meta); err != nil {
					t.Fatal(err)
				}
				var obj interface {
					GetName() string
					GetNamespace() string
				}
				switch meta.APIVersion + " " + meta.Kind {
				case "v1 ConfigMap":
					obj = &corev1.ConfigMap{}
				case "apps/v1 Deployment":
					obj = &appsv1.Deployment{}
				case "v1 Service":
					obj = &corev1.Service{}
				default:
					t.Fatalf("unexpected object %s %s", meta.APIVersion, meta.Kind)
				}
				if err := yaml.UnmarshalStrict(doc, obj); err != nil {
					t.Fatalf("%s is not a valid %s: %v\n%s", meta.Kind, meta.APIVersion, err, doc)
				}
				if obj.GetNamespace() != ns {
					t.Errorf("%s %s: namespace %q, want %q", meta.Kind, obj.GetName(), obj.GetNamespace(), ns)
				}
				switch v := obj.(type) {
				case *corev1.ConfigMap:
					configMaps[v.Name] = v
				case *appsv1.Deployment:
					deps[v.Name] = v
				case *corev1.Service:
					services[v.Name] = v
				}
			}
			if len(configMaps) != 1 || len(deps) != 2 || len(services) != 2 {
				t.Fatalf("got %d ConfigMaps, %d Deployments, %d Services; want 1, 2, 2", len(configMaps), len(deps), len(services))
			}
			rl, redis := deps[name], deps[name+"-redis"]
			if rl == nil || redis == nil {
				t.Fatalf("Deployments %v, want %s and %s-redis", slices.Collect(maps.Keys(deps)), name, name)
			}
			if rl.Spec.Replicas == nil || *rl.Spec.Replicas != tc.replicas || redis.Spec.Replicas == nil || *redis.Spec.Replicas != 1 {
				t.Errorf("replicas %v and %v, want %d and 1", rl.Spec.Replicas, redis.Spec.Replicas, tc.replicas)
			}
			for _, d := range []*appsv1.Deployment{rl, redis} {
				pod := d.Spec.Template
				if d.Spec.Selector == nil || d.Spec.Selector.MatchLabels["app"] != pod.Labels["app"] || pod.Labels["app"] != d.Name {
					t.Errorf("Deployment %s: selector %v, pod labels %v", d.Name, d.Spec.Selector, pod.Labels)
				}
				if len(pod.Spec.Containers) != 1 {
					t.Fatalf("Deployment %s: %d containers", d.Name, len(pod.Spec.Containers))
				}
				c := pod.Spec.Containers[0]
				declared := map[int32]bool{}
				for _, p := range c.Ports {
					declared[p.ContainerPort] = true
				}
				probe := c.ReadinessProbe
				switch {
				case probe == nil:
					t.Errorf("Deployment %s: no readiness probe", d.Name)
				case probe.HTTPGet != nil && !declared[probe.HTTPGet.Port.IntVal],
					probe.TCPSocket != nil && !declared[probe.TCPSocket.Port.IntVal]:
					t.Errorf("Deployment %s: the probe's port is not a container port: %+v", d.Name, probe)
				}
				svc := services[d.Name]
				if svc == nil || svc.Spec.Selector["app"] != d.Name || len(svc.Spec.Ports) != 1 || !declared[svc.Spec.Ports[0].TargetPort.IntVal] {
					t.Errorf("Service %s does not reach Deployment %s's container ports %v: %+v", d.Name, d.Name, declared, svc)
				}
				for _, v := range pod.Spec.Volumes {
					if v.ConfigMap != nil && configMaps[v.ConfigMap.Name] == nil {
						t.Errorf("Deployment %s mounts ConfigMap %q, which is not generated", d.Name, v.ConfigMap.Name)
					}
				}
			}
			if img := rl.Spec.Template.Spec.Containers[0].Image; img != cmp.Or(o.Image, envoy.DefaultRateLimitImage) {
				t.Errorf("ratelimit image %q", img)
			}
			if img := redis.Spec.Template.Spec.Containers[0].Image; img != cmp.Or(o.RedisImage, envoy.DefaultRedisImage) {
				t.Errorf("redis image %q", img)
			}
			grpc := services[name].Spec.Ports[0]
			if grpc.Name != "grpc" || grpc.AppProtocol == nil || *grpc.AppProtocol != "grpc" || grpc.Port != envoy.RateLimitGRPCPort {
				t.Errorf("the service's gRPC port %+v: want name grpc, appProtocol grpc, port %d", grpc, envoy.RateLimitGRPCPort)
			}
		})
	}
}

func TestRateLimitManifestErrors(t *testing.T) {
	istio := string(readFile(t, "testdata/ratelimit/istio-plugin.json"))
	for _, tc := range []struct {
		name, filter string
		opts         envoy.RateLimitK8sOptions
		want         []string
	}{
		{"other namespace", istio, envoy.RateLimitK8sOptions{Namespace: "infra"},
			[]string{`filter.rate_limit_service.cluster: "outbound|8081||ratelimit.default.svc.cluster.local" is not the cluster`,
				`use "outbound|8081||ratelimit.infra.svc.cluster.local"`}},
		{"default authority", strings.Replace(istio, `"authority": "ratelimit.default.svc.cluster.local",`, "", 1),
			envoy.RateLimitK8sOptions{}, []string{`filter.rate_limit_service.authority: "outbound|8081||ratelimit.default.svc.cluster.local": use "ratelimit.default.svc.cluster.local"`}},
		{"bad options", istio, envoy.RateLimitK8sOptions{Name: "Rate_Limit", Namespace: "-x", Replicas: -1},
			[]string{"name: \"Rate_Limit\" must be", "namespace: \"-x\" must be", "replicas: must be between 1 and 100, got -1"}},
		{"name too long for redis", istio, envoy.RateLimitK8sOptions{Name: strings.Repeat("a", 58)}, []string{"at most 57"}},
		{"no global rule", `{"rules":[{"name":"a","key":["path"],"capacity":1,"refill":1,"interval":"1s"}]}`,
			envoy.RateLimitK8sOptions{}, []string{"the filter has no global rule"}},
		{"bad filter", `{"rules":[]}`, envoy.RateLimitK8sOptions{}, []string{"rules"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := envoy.RateLimitManifests([]byte(tc.filter), tc.opts)
			if err == nil {
				t.Fatalf("no error; output:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestRateLimitImageIsPinnedVersion: the default image is the commit of
// envoyproxy/ratelimit that the e2e suite builds and runs (the tools module's
// pseudo-version ends in the commit's first 12 hex digits; the images are
// tagged with its first 8).
func TestRateLimitImageIsPinnedVersion(t *testing.T) {
	gomod := string(readFile(t, "../e2e/ratelimit/go.mod"))
	var commit string
	for _, line := range strings.Split(gomod, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "github.com/envoyproxy/ratelimit" {
			commit = f[1][strings.LastIndex(f[1], "-")+1:]
		}
	}
	if len(commit) != 12 {
		t.Fatalf("no pseudo-version of github.com/envoyproxy/ratelimit in the tools module's go.mod")
	}
	if want := "envoyproxy/ratelimit:" + commit[:8]; envoy.DefaultRateLimitImage != want {
		t.Errorf("DefaultRateLimitImage %q, want %q (the version e2e/ratelimit/go.mod pins)", envoy.DefaultRateLimitImage, want)
	}
}
