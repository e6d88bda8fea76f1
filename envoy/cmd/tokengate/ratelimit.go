package main

import "github.com/tokengate/tokengate/envoy"

// runRateLimit: tokengate ratelimit (-config FILE | -spec FILE) [-k8s [flags]] [-o FILE].
func runRateLimit(e *env, args []string) int {
	fs := newFlagSet(e, "ratelimit", "(-config FILE | -spec FILE) [-k8s [-namespace NS] [-name NAME] [-replicas N] [-image IMAGE] [-redis-image IMAGE]] [-o FILE]")
	source := addPluginFlags(fs)
	k8s := fs.Bool("k8s", false, "write Kubernetes manifests (ConfigMap, Deployments, Services of envoyproxy/ratelimit and Redis) instead of the service's configuration file")
	namespace := fs.String("namespace", "default", "with -k8s: the namespace of every object")
	name := fs.String("name", envoy.DefaultRateLimitName, "with -k8s: the Service, Deployment and ConfigMap name (Redis gets NAME-redis)")
	replicas := fs.Int("replicas", envoy.DefaultRateLimitReplicas, "with -k8s: replicas of the rate limit service")
	image := fs.String("image", envoy.DefaultRateLimitImage, "with -k8s: the envoyproxy/ratelimit image")
	redisImage := fs.String("redis-image", envoy.DefaultRedisImage, "with -k8s: the Redis image")
	outPath := fs.String("o", "", "output file (default: standard output)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	given := givenFlags(fs)
	switch {
	case fs.NArg() > 0:
		e.errorf("ratelimit: unexpected argument %q", fs.Arg(0))
		return exitUsage
	case !*k8s && (given["namespace"] || given["name"] || given["replicas"] || given["image"] || given["redis-image"]):
		e.errorf("ratelimit: -namespace, -name, -replicas, -image and -redis-image go with -k8s")
		return exitUsage
	}
	plugin, code := source.read(e, "ratelimit", given, "")
	if plugin == nil {
		return code
	}
	filter := plugin.Config
	var (
		out []byte
		err error
	)
	if *k8s {
		out, err = envoy.RateLimitManifests(filter, envoy.RateLimitK8sOptions{
			Namespace: *namespace, Name: *name, Replicas: *replicas, Image: *image, RedisImage: *redisImage,
		})
	} else {
		out, err = envoy.RateLimitConfig(filter)
	}
	if err != nil {
		e.errorf("ratelimit: %v", err)
		return exitInvalid
	}
	return writeOutput(e, *outPath, out)
}
