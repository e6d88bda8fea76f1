package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/tidwall/gjson"

	"github.com/tokengate/tokengate/envoy"
	"github.com/tokengate/tokengate/internal/config"
)

// runCheck: tokengate check FILE. FILE ("-" for standard input) is either a
// plugin configuration, the JSON the filter receives, or a Kubernetes
// manifest (YAML, one or more documents) whose WasmPlugins carry the
// configuration in spec.pluginConfig. Each configuration goes through the
// filter's own parser, after the conversion Istio applies to pluginConfig.
// Every problem is printed on its own line as FILE: PATH: MESSAGE.
func runCheck(e *env, args []string) int {
	fs := newFlagSet(e, "check", "FILE   (a plugin configuration in JSON, or a WasmPlugin manifest in YAML; - reads standard input)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		e.errorf("check: want exactly one FILE, got %d arguments", fs.NArg())
		fs.Usage()
		return exitUsage
	}
	name := fs.Arg(0)
	data, err := readInput(e, name)
	if err != nil {
		e.errorf("check: %v", err)
		return exitUsage
	}
	if name == "-" {
		name = "standard input"
	}
	if looksLikeJSON(data) {
		if _, err := config.Parse(data); err != nil {
			printProblems(e, name, "", err)
			return exitInvalid
		}
		fmt.Fprintf(e.stdout, "%s: ok\n", name)
		return exitOK
	}
	plugins, err := envoy.ReadWasmPlugins(data)
	if err != nil {
		printProblems(e, name, "", err)
		return exitInvalid
	}
	code := exitOK
	for _, p := range plugins {
		where := name + ": WasmPlugin " + p.ID()
		if err := p.CheckConfig(); err != nil {
			printProblems(e, where, "spec.pluginConfig", err)
			code = exitInvalid
			continue
		}
		fmt.Fprintf(e.stdout, "%s: ok\n", where)
	}
	return code
}

// readInput reads the named file, or standard input for "-".
func readInput(e *env, name string) ([]byte, error) {
	if name == "-" {
		data, err := io.ReadAll(e.stdin)
		if err != nil {
			return nil, fmt.Errorf("read standard input: %w", err)
		}
		return data, nil
	}
	return os.ReadFile(name)
}

// looksLikeJSON tells a plugin configuration from a manifest: JSON starts
// with '{' (or is something else the filter would receive as JSON and reject
// with a message of its own), unless it is a WasmPlugin written as JSON
// (kubectl get -o json), which is a manifest.
func looksLikeJSON(data []byte) bool {
	t := bytes.TrimLeft(data, " \t\r\n\ufeff")
	if len(t) > 0 && t[0] == '{' && gjson.ValidBytes(t) && gjson.GetBytes(t, "kind").String() == "WasmPlugin" {
		return false
	}
	return len(t) == 0 || t[0] == '{' || t[0] == '[' || json.Valid(t)
}

// printProblems prints one line per problem of err, "where: path: message",
// each path under base, or err itself when it lists no problems.
func printProblems(e *env, where, base string, err error) {
	var ce *config.Error
	if !errors.As(err, &ce) {
		fmt.Fprintf(e.stderr, "%s: %v\n", where, err)
		return
	}
	for _, p := range ce.Problems {
		switch {
		case base == "":
		case p.Path == "":
			p.Path = base
		default:
			p.Path = base + "." + p.Path
		}
		fmt.Fprintf(e.stderr, "%s: %s\n", where, p)
	}
}
