package main

import (
	"context"
	"encoding/json"
	"fmt"
	"mabd/daemon/api"
	"mabd/emulator"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mabd/builder/buildertest"
	"mabd/internal/cli"
	"mabd/testing/registry"
	"mabd/testing/sandbox"
)

// TestDaemonFleet: a daemon whose builder emulates arm64 and whose fleet
// has a second buildkitd on 127.0.0.1 over mutual TLS, declared native for
// linux/arm64. Status, `mabd fleet` and the metrics show both nodes and
// the routes; `mabd fleet buildx` gives arm64 to the native node; `mabd
// build` without --addr builds over the fleet and says where; stopped,
// the node is down within one check interval, the daemon degraded and
// arm64 routed to the local builder; a platform no node builds is refused
// naming the nodes.
func TestDaemonFleet(t *testing.T) {
	hello := helloExample(t)
	bin := mabdBinary(t)
	sandbox.Run(t, func(t *testing.T, mount string) {
		reg := registry.Start(t)
		base := registry.PushBusyboxBase(t, reg, "busybox", "amd64", "arm64")
		arm := buildertest.StartRemote(t, "linux/amd64", "linux/arm64")
		dir := shortDir(t)
		sock := filepath.Join(dir, "mabd.sock")
		config := fmt.Sprintf(`architectures = []
[verify]
interval = "0"
[buildkit]
architectures = ["arm64"]
binary = %q
root = %q
[fleet]
check_interval = "1s"
[fleet.nodes.arm1]
address = %q
ca = %q
cert = %q
key = %q
native = ["linux/arm64"]
`, buildertest.Bin(t, "buildkitd"), filepath.Join(buildertest.Dir(t), "root"), arm.Address, arm.CA, arm.Cert, arm.Key)
		cfg := filepath.Join(dir, "mabd.toml")
		if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
		n := newNotifySocket(t, dir)
		d := startDaemonArgs(t, bin, dir, []string{"daemon", "--config", cfg, "--binfmt-mount", mount, "--socket", sock,
			"--state-dir", filepath.Join(dir, "state"), "--buildkit-socket", filepath.Join(dir, "bk.sock")}, "NOTIFY_SOCKET="+n.path)
		if ready := n.wait(t, "READY=1", 2*time.Minute); !strings.Contains(ready, "fleet: 2/2 nodes up") {
			t.Errorf("READY status %q does not count the fleet's nodes", ready)
		}

		code, out, _ := runBin(t, bin, time.Minute, "status", "--socket", sock)
		if code != 0 || !strings.Contains(out, "fleet: 2 nodes") || !strings.Contains(out, "arm1") {
			t.Errorf("mabd status: exit %d, want 0 and the fleet:\n%s", code, out)
		}
		code, out, _ = runBin(t, bin, time.Minute, "fleet", "--socket", sock, "--json", "--check")
		var fi api.FleetInfo
		if err := json.Unmarshal([]byte(out), &fi); err != nil || code != 0 {
			t.Fatalf("mabd fleet --json: exit %d, %v\n%s", code, err, out)
		}
		routes := map[string]string{}
		for _, r := range fi.Routes {
			routes[r.Platform] = fmt.Sprintf("%s native=%v", r.Node, r.Native)
		}
		if routes["linux/arm64"] != "arm1 native=true" || routes["linux/amd64"] != "local native=true" {
			t.Errorf("routes %v: want arm64 on arm1 and amd64 on local, natively", routes)
		}
		_, out, _ = runBin(t, bin, time.Minute, "fleet", "buildx", "--socket", sock)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		var creates []string
		for _, l := range lines {
			if strings.HasPrefix(l, "docker buildx create") {
				creates = append(creates, l)
			}
		}
		// The local builder first (buildx's default node builds the host's
		// platform, as mabd build does), without arm64: buildx sends
		// arm64 to arm1, whose line has its TLS.
		localPlatforms := "linux/amd64"
		if emulator.IsNative("i386") {
			localPlatforms = "linux/386,linux/amd64"
		}
		if len(creates) != 2 || !strings.Contains(creates[0], "--node local --driver remote --platform "+localPlatforms+" unix://") ||
			!strings.Contains(creates[1], "--append --node arm1 --driver remote --platform linux/arm64 --driver-opt cacert="+arm.CA+",cert="+arm.Cert+",key="+arm.Key+" "+arm.Address) {
			t.Errorf("mabd fleet buildx: want local first without arm64, then arm1 with linux/arm64 and its TLS:\n%s", out)
		}

		ref := reg + "/fleet-daemon:v1"
		code, _, stderr := runBin(t, bin, 3*time.Minute, "build", "--socket", sock, "--progress", "plain",
			"--platform", "linux/amd64,linux/arm64", "--push", "-t", ref, "--build-arg", "BASE="+base, hello)
		if code != 0 {
			t.Fatalf("build over the fleet: exit %d\n%s", code, stderr)
		}
		for _, w := range []string{"where each platform was built", "linux/arm64  arm1   native", "linux/amd64  local  native", "[arm1 linux/arm64] "} {
			if !strings.Contains(stderr, w) {
				t.Errorf("the build's output lacks %q:\n%s", w, stderr)
			}
		}
		layoutDir := filepath.Join(t.TempDir(), "layout")
		skopeo(t, "copy", "--all", "--src-tls-verify=false", "docker://"+ref, "oci:"+layoutDir+":v1")
		if arch := archFiles(t, layoutDir); arch["linux/amd64"] != "x86_64" || arch["linux/arm64"] != "aarch64" {
			t.Errorf("/arch by platform: %q, want x86_64 and aarch64", arch)
		}

		code, _, stderr = runBin(t, bin, time.Minute, "build", "--socket", sock, "--platform", "linux/s390x", "--output", "type=oci,dest="+filepath.Join(t.TempDir(), "x.tar"), hello)
		if code != cli.ExitError || !strings.Contains(stderr, "no node builds linux/s390x") || !strings.Contains(stderr, "arm1 (") || !strings.Contains(stderr, "[fleet.nodes]") {
			t.Errorf("a platform no node builds: exit %d, want %d naming the nodes and the fix:\n%s", code, cli.ExitError, stderr)
		}

		// The node stops: down within one check interval (1 s), and
		// arm64 goes to the local builder.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := arm.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		stopped := time.Now()
		var st *api.DaemonStatus
		for time.Since(stopped) < 30*time.Second {
			var err error
			if st, err = d.client().Status(ctx); err == nil && st.Health == "degraded" {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("arm1 stopped: the daemon degraded after %v", time.Since(stopped).Round(10*time.Millisecond))
		if st == nil || st.Health != "degraded" || !strings.Contains(strings.Join(st.Problems, "\n"), "fleet: node arm1") ||
			!strings.Contains(strings.Join(st.Problems, "\n"), "linux/arm64 goes to local") {
			t.Fatalf("status after arm1 stopped: %+v", st)
		}
		metrics := httpGet(t, sock, "/metrics")
		for _, w := range []string{`mabd_fleet_node_up{address="` + arm.Address + `",node="arm1"} 0`, `mabd_fleet_route{native="false",node="local",platform="linux/arm64"} 1`, `mabd_healthy 0`} {
			if !strings.Contains(metrics, w) {
				t.Errorf("metrics lack %s", w)
			}
		}
		if code, out, _ := runBin(t, bin, time.Minute, "fleet", "--socket", sock); code != cli.ExitDegraded || !strings.Contains(out, "arm1 is down") {
			t.Errorf("mabd fleet with arm1 down: exit %d, want %d:\n%s", code, cli.ExitDegraded, out)
		}
		stopDaemon(t, d, time.Minute)
	})
}
