package main

import (
	"flag"

	"github.com/tokengate/tokengate/envoy"
)

// pluginFlags are the -config and -spec flags of the commands that need only
// the plugin part of a configuration (istio, ratelimit).
type pluginFlags struct {
	config, spec *string
}

func addPluginFlags(fs *flag.FlagSet) pluginFlags {
	return pluginFlags{
		config: fs.String("config", "", "plugin configuration, JSON (what the filter receives); - reads standard input"),
		spec:   fs.String("spec", "", "gateway spec, YAML or JSON: only its filter block and failure_policy are used; - reads standard input"),
	}
}

// givenFlags returns the names of the flags set on the command line.
func givenFlags(fs *flag.FlagSet) map[string]bool {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	return given
}

// read returns the plugin from -config (with failurePolicy) or -spec,
// exactly one of which must be given. On failure it reports under the
// command's name and returns nil with the exit status.
func (p pluginFlags) read(e *env, cmd string, given map[string]bool, failurePolicy envoy.FailurePolicy) (*envoy.Plugin, int) {
	if given["config"] == given["spec"] {
		e.errorf("%s: give exactly one of -config (a plugin configuration) and -spec (a gateway spec)", cmd)
		return nil, exitUsage
	}
	path := *p.spec
	if given["config"] {
		path = *p.config
	}
	data, err := readInput(e, path)
	if err != nil {
		e.errorf("%s: %v", cmd, err)
		return nil, exitUsage
	}
	var plugin *envoy.Plugin
	if given["config"] {
		plugin, err = envoy.PluginFromConfig(data, failurePolicy)
	} else {
		plugin, err = envoy.ParsePlugin(data)
	}
	if err != nil {
		e.errorf("%s: %v", cmd, err)
		return nil, exitInvalid
	}
	return plugin, exitOK
}
