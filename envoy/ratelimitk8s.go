package envoy

import (
	"bytes"
	"fmt"
	"strconv"

	"sigs.k8s.io/yaml"
)

// IstioClusterDomain is the DNS domain of a Kubernetes cluster, as Istio puts
// it in its cluster names (Istio's and Kubernetes' default).
const IstioClusterDomain = "cluster.local"

// IstioClusterName returns the name of the cluster Istio gives the port of a
// Kubernetes Service in every proxy of the mesh:
// outbound|<port>||<service>.<namespace>.svc.cluster.local. A WasmPlugin's
// rate_limit_service.cluster names the rate limit service that way.
func IstioClusterName(service, namespace string, port uint32) string {
	return fmt.Sprintf("outbound|%d||%s", port, IstioServiceHost(service, namespace))
}

// IstioServiceHost returns the service's host name,
// <service>.<namespace>.svc.cluster.local, a good :authority for its calls.
func IstioServiceHost(service, namespace string) string {
	return service + "." + namespace + ".svc." + IstioClusterDomain
}

// Defaults of RateLimitK8sOptions. The ratelimit image is the commit of
// envoyproxy/ratelimit that the e2e suite runs (e2e/ratelimit/go.mod); its
// image tag is the commit's first 8 hex digits.
const (
	DefaultRateLimitName     = "ratelimit"
	DefaultRateLimitReplicas = 2
	DefaultRateLimitImage    = "envoyproxy/ratelimit:3fb70258"
	DefaultRedisImage        = "redis:7.2"
	RateLimitGRPCPort        = 8081 // the service's gRPC port (ShouldRateLimit)
	rateLimitHTTPPort        = 8080 // /healthcheck and /json
	rateLimitDebugPort       = 6070
	redisPort                = 6379
)

// RateLimitK8sOptions says where the rate limit service runs in Kubernetes.
// The zero value gives the defaults above in namespace "default".
type RateLimitK8sOptions struct {
	Namespace  string // "" gives "default"
	Name       string // of the Service, Deployment and ConfigMap; Redis gets Name-redis. "" gives DefaultRateLimitName
	Replicas   int    // of the rate limit service; 0 gives DefaultRateLimitReplicas. Redis always runs one
	Image      string // "" gives DefaultRateLimitImage
	RedisImage string // "" gives DefaultRedisImage
}

func (o RateLimitK8sOptions) withDefaults() RateLimitK8sOptions {
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.Name == "" {
		o.Name = DefaultRateLimitName
	}
	if o.Replicas == 0 {
		o.Replicas = DefaultRateLimitReplicas
	}
	if o.Image == "" {
		o.Image = DefaultRateLimitImage
	}
	if o.RedisImage == "" {
		o.RedisImage = DefaultRedisImage
	}
	return o
}

// RateLimitManifests returns Kubernetes manifests, ready for kubectl apply,
// that run the rate limit service of the plugin configuration filter (JSON)
// in an Istio mesh: a ConfigMap with RateLimitConfig's file, a Deployment
// and a Service for envoyproxy/ratelimit (its gRPC port named grpc with
// appProtocol grpc, so Istio speaks HTTP/2 to it), and a Deployment and a
// Service for the one Redis it counts in (no persistence: counters are
// windows of at most a day).
//
// The filter's rate_limit_service.cluster must be the cluster Istio gives
// that Service (IstioClusterName) and its authority the Service's host name
// (IstioServiceHost); the errors say which names to use.
func RateLimitManifests(filter []byte, o RateLimitK8sOptions) ([]byte, error) {
	o = o.withDefaults()
	ps := &problems{what: "rate limit service manifests"}
	// Name-redis must be a DNS label too.
	if msg := checkDNSLabel(o.Name, 63-len("-redis")); msg != "" {
		ps.addf("name", "%s", msg)
	}
	if msg := checkDNSLabel(o.Namespace, 63); msg != "" {
		ps.addf("namespace", "%s", msg)
	}
	if o.Replicas < 1 || o.Replicas > 100 {
		ps.addf("replicas", "must be between 1 and 100, got %d", o.Replicas)
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	cfg, err := parseGlobal(filter)
	if err != nil {
		return nil, err
	}
	conf := rateLimitConfig(cfg)
	if want := IstioClusterName(o.Name, o.Namespace, RateLimitGRPCPort); cfg.RateLimitService.Cluster != want {
		ps.addf("filter.rate_limit_service.cluster", "%q is not the cluster Istio gives the Service %s in namespace %s: use %q",
			cfg.RateLimitService.Cluster, o.Name, o.Namespace, want)
		return nil, ps.err()
	}
	if want := IstioServiceHost(o.Name, o.Namespace); cfg.RateLimitService.Authority != want {
		ps.addf("filter.rate_limit_service.authority", "%q: use %q, the Service's host name (the default, the cluster name, is no host name)",
			cfg.RateLimitService.Authority, want)
		return nil, ps.err()
	}
	redisName := o.Name + "-redis"
	docs := []any{
		k8sObject("v1", "ConfigMap", o.Name+"-config", o, map[string]any{
			"data": map[string]any{"config.yaml": string(conf)},
		}),
		k8sObject("apps/v1", "Deployment", o.Name, o, deploymentSpec(o.Name, o.Replicas, map[string]any{
			"name":    "ratelimit",
			"image":   o.Image,
			"command": []string{"/bin/ratelimit"},
			"env": envList(
				"REDIS_SOCKET_TYPE", "tcp",
				"REDIS_URL", redisName+":"+strconv.Itoa(redisPort),
				"REDIS_TIMEOUT", "500ms",
				"USE_STATSD", "false",
				"LOG_LEVEL", "warn",
				"GRPC_PORT", strconv.Itoa(RateLimitGRPCPort),
				"PORT", strconv.Itoa(rateLimitHTTPPort),
				"DEBUG_PORT", strconv.Itoa(rateLimitDebugPort),
				"RUNTIME_ROOT", "/data",
				"RUNTIME_SUBDIRECTORY", "ratelimit",
				"RUNTIME_WATCH_ROOT", "false",
				// A mounted ConfigMap holds ..data and other dot entries.
				"RUNTIME_IGNOREDOTFILES", "true",
			),
			"ports": []any{
				map[string]any{"name": "grpc", "containerPort": RateLimitGRPCPort},
				map[string]any{"name": "http", "containerPort": rateLimitHTTPPort},
			},
			"readinessProbe": map[string]any{
				"httpGet":       map[string]any{"path": "/healthcheck", "port": rateLimitHTTPPort},
				"periodSeconds": 5,
			},
			"resources": map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "64Mi"}},
			"volumeMounts": []any{
				map[string]any{"name": "config", "mountPath": "/data/ratelimit/config", "readOnly": true},
			},
		}, []any{
			map[string]any{"name": "config", "configMap": map[string]any{"name": o.Name + "-config"}},
		})),
		k8sObject("v1", "Service", o.Name, o, serviceSpec(o.Name, map[string]any{
			"name": "grpc", "port": RateLimitGRPCPort, "targetPort": RateLimitGRPCPort, "appProtocol": "grpc",
		})),
		k8sObject("apps/v1", "Deployment", redisName, o, deploymentSpec(redisName, 1, map[string]any{
			"name":  "redis",
			"image": o.RedisImage,
			"args":  []string{"--save", "", "--appendonly", "no"},
			"ports": []any{map[string]any{"name": "tcp-redis", "containerPort": redisPort}},
			"readinessProbe": map[string]any{
				"tcpSocket":     map[string]any{"port": redisPort},
				"periodSeconds": 5,
			},
			"resources": map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "64Mi"}},
		}, nil)),
		k8sObject("v1", "Service", redisName, o, serviceSpec(redisName, map[string]any{
			"name": "tcp-redis", "port": redisPort, "targetPort": redisPort,
		})),
	}
	var out bytes.Buffer
	out.WriteString("# The rate limit service of tokengate's global rules (envoyproxy/ratelimit and its Redis),\n" +
		"# generated by tokengate. In the WasmPlugin, rate_limit_service.cluster is\n" +
		"# " + IstioClusterName(o.Name, o.Namespace, RateLimitGRPCPort) + "\n")
	for _, d := range docs {
		y, err := yaml.Marshal(d)
		if err != nil {
			return nil, fmt.Errorf("envoy: rate limit service manifests: %w", err)
		}
		out.WriteString("---\n")
		out.Write(y)
	}
	return out.Bytes(), nil
}

// checkDNSLabel returns what keeps s from being a Kubernetes object name of
// at most max characters (an RFC 1123 label), or "".
func checkDNSLabel(s string, max int) string {
	if len(s) <= max && dns1123Label.MatchString(s) {
		return ""
	}
	return fmt.Sprintf("%q must be at most %d lower-case letters, digits and '-', starting and ending with a letter or digit", s, max)
}

// k8sObject returns a Kubernetes object with its metadata and the fields of rest.
func k8sObject(apiVersion, kind, name string, o RateLimitK8sOptions, rest map[string]any) map[string]any {
	m := map[string]any{
		"apiVersion": apiVersion,
		"kind":       kind,
		"metadata": map[string]any{
			"name":      name,
			"namespace": o.Namespace,
			"labels":    map[string]any{"app": name, "app.kubernetes.io/part-of": "tokengate"},
		},
	}
	for k, v := range rest {
		m[k] = v
	}
	return m
}

func deploymentSpec(app string, replicas int, container map[string]any, volumes []any) map[string]any {
	pod := map[string]any{"containers": []any{container}}
	if volumes != nil {
		pod["volumes"] = volumes
	}
	return map[string]any{"spec": map[string]any{
		"replicas": replicas,
		"selector": map[string]any{"matchLabels": map[string]any{"app": app}},
		"template": map[string]any{
			"metadata": map[string]any{"labels": map[string]any{"app": app}},
			"spec":     pod,
		},
	}}
}

func serviceSpec(app string, port map[string]any) map[string]any {
	return map[string]any{"spec": map[string]any{
		"selector": map[string]any{"app": app},
		"ports":    []any{port},
	}}
}

// envList turns name, value pairs into a container's env list.
func envList(pairs ...string) []any {
	out := make([]any, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, map[string]any{"name": pairs[i], "value": pairs[i+1]})
	}
	return out
}
