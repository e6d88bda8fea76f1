// Command envoysim runs the Envoy stand-in on a bootstrap, with Envoy's command-line flags:
//
//	envoysim -c bootstrap.yaml --concurrency 2 [--log-level info] [--log-path FILE] [--service-node ID]
//
// It is a test and development tool, NOT a production proxy: production is Envoy or Istio.
// --disable-hot-restart and --base-id are accepted, and ignored, so that scripts written for
// Envoy run unchanged. It stops on SIGINT, SIGTERM or POST /quitquitquit on the admin port.
// Exit status: 0 stopped, 1 bad configuration or start-up failure, 2 bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tokengate/tokengate/internal/envoysim"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("envoysim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var configPath string
	fs.StringVar(&configPath, "c", "", "bootstrap file, YAML or JSON (Envoy's -c)")
	fs.StringVar(&configPath, "config-path", "", "same as -c")
	concurrency := fs.Int("concurrency", 0, "worker threads; 0 means one per CPU, like Envoy")
	logLevel := fs.String("log-level", "info", "trace, debug, info, warning, error, critical or off")
	logPath := fs.String("log-path", "", "write the log to this file instead of stderr")
	serviceNode := fs.String("service-node", "", "the node id, shown in the admin /server_info (Envoy's --service-node)")
	fs.Bool("disable-hot-restart", false, "accepted for Envoy compatibility; no effect")
	fs.Int("base-id", 0, "accepted for Envoy compatibility; no effect")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: envoysim -c bootstrap.yaml [--concurrency N] [--log-level LEVEL] [--log-path FILE] [--service-node ID]")
		fmt.Fprintln(stderr, envoysim.Banner)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if configPath == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	level, ok := map[string]slog.Level{
		"trace": slog.LevelDebug - 4, "debug": slog.LevelDebug, "info": slog.LevelInfo,
		"warning": slog.LevelWarn, "warn": slog.LevelWarn, "error": slog.LevelError,
		"critical": slog.LevelError + 4, "off": slog.LevelError + 100,
	}[strings.ToLower(*logLevel)]
	if !ok {
		fmt.Fprintf(stderr, "envoysim: unknown --log-level %q\n", *logLevel)
		return 2
	}
	out := stderr
	if *logPath != "" {
		f, err := os.OpenFile(*logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintf(stderr, "envoysim: %v\n", err)
			return 1
		}
		defer f.Close()
		out = f
	}
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	cfg, err := envoysim.LoadConfig(configPath)
	if err != nil {
		log.Error("bad configuration", "err", err)
		fmt.Fprintf(stderr, "envoysim: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := envoysim.New(ctx, cfg, envoysim.Options{
		Concurrency: *concurrency,
		Filter:      envoysim.WasmFilter(log),
		Logger:      log,
		ServiceNode: *serviceNode,
	})
	if err != nil {
		log.Error("start-up failed", "err", err)
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := srv.Start(); err != nil {
		log.Error("start-up failed", "err", err)
		fmt.Fprintln(stderr, err)
		_ = srv.Shutdown(context.Background())
		return 1
	}
	select {
	case <-ctx.Done():
		log.Info("signal received, shutting down")
	case <-srv.Quit():
		log.Info("quitquitquit received, shutting down")
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	return 0
}
