package fleet

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/platforms"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestSplit(t *testing.T) {
	worker := []ocispecs.Platform{platforms.MustParse("linux/amd64"), platforms.MustParse("linux/amd64/v2"), platforms.MustParse("linux/386"), platforms.MustParse("linux/arm64")}
	all, native, emulated := split(worker, nil)
	if !slices.Equal(native, []string{"linux/amd64", "linux/amd64/v2", "linux/386"}) || !slices.Equal(emulated, []string{"linux/arm64"}) || len(all) != 4 {
		t.Errorf("undeclared: %q native, %q emulated", native, emulated)
	}
	_, native, emulated = split(worker, []string{"arm64"})
	if !slices.Equal(native, []string{"linux/arm64"}) || len(emulated) != 3 {
		t.Errorf("declared arm64: %q native, %q emulated", native, emulated)
	}
}

func TestPlan(t *testing.T) {
	local := State{Node: LocalName, Local: true, Up: true, Platforms: []string{"linux/amd64", "linux/arm64", "linux/riscv64"}, Native: []string{"linux/amd64"}, Emulated: []string{"linux/arm64", "linux/riscv64"}}
	arm1 := State{Node: "arm1", Up: true, Platforms: []string{"linux/arm64", "linux/arm/v7"}, Native: []string{"linux/arm64"}, Emulated: []string{"linux/arm/v7"}, LatencyMS: 3}
	arm2 := arm1
	arm2.Node, arm2.Active = "arm2", 2
	emu := State{Node: "emu", Up: true, Platforms: []string{"linux/amd64", "linux/arm64"}, Native: []string{"linux/amd64"}, Emulated: []string{"linux/arm64"}}
	down := State{Node: "arm1", Up: false, Native: []string{"linux/arm64"}, LastError: "connection refused"}
	tests := []struct {
		name   string
		asked  []string
		states []State
		want   []string // platform=node(native|emulated)
		why    string
		refuse []string
	}{
		{"native first, whatever the order", []string{"linux/amd64", "linux/arm64"}, []State{local, arm1}, []string{"linux/amd64=local(native)", "linux/arm64=arm1(native)"}, "native on arm1", nil},
		{"an emulating node listed first does not take arm64", []string{"linux/arm64"}, []State{emu, local, arm1}, []string{"linux/arm64=arm1(native)"}, "", nil},
		{"emulated: the local one first", []string{"linux/arm64"}, []State{emu, local}, []string{"linux/arm64=local(emulated)"}, "no node runs it natively", nil},
		{"the least busy native node", []string{"linux/arm64"}, []State{local, arm2, arm1}, []string{"linux/arm64=arm1(native)"}, "", nil},
		{"the native node down: emulated, and why", []string{"linux/arm64"}, []State{local, down}, []string{"linux/arm64=local(emulated)"}, "arm1, native for it, is down (connection refused)", nil},
		{"a variant runs on its architecture", []string{"linux/arm/v6"}, []State{local, arm1}, []string{"linux/arm/v6=arm1(emulated)"}, "", nil},
		{"nobody builds s390x", []string{"linux/amd64", "linux/s390x", "linux/ppc64le"}, []State{local, arm1}, nil, "", []string{"linux/s390x", "linux/ppc64le"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			routes, err := Plan(tt.asked, tt.states)
			if tt.refuse != nil {
				var nr *NoRouteError
				if !errors.As(err, &nr) || !slices.Equal(nr.Platforms, tt.refuse) || !strings.Contains(err.Error(), "arm1 (") {
					t.Fatalf("Plan = %v, %v; want %q refused, naming the nodes", routes, err, tt.refuse)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range routes {
				kind := "emulated"
				if r.Native {
					kind = "native"
				}
				got = append(got, r.Platform+"="+r.Node+"("+kind+")")
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("routes %q, want %q", got, tt.want)
			}
			if tt.why != "" && !strings.Contains(routes[len(routes)-1].Why, tt.why) {
				t.Errorf("why %q, want %q in it", routes[len(routes)-1].Why, tt.why)
			}
		})
	}
}

func TestPlanSpreadsOverEqualNodes(t *testing.T) {
	a := State{Node: "a", Up: true, Platforms: []string{"linux/amd64", "linux/386"}, Native: []string{"linux/amd64", "linux/386"}}
	b := a
	b.Node = "b"
	routes, err := Plan([]string{"linux/amd64", "linux/386"}, []State{a, b})
	if err != nil || routes[0].Node == routes[1].Node {
		t.Errorf("two platforms on equal nodes: %+v, %v; want one each", routes, err)
	}
}

func TestRoutes(t *testing.T) {
	local := State{Node: LocalName, Local: true, Up: true, Native: []string{"linux/amd64", "linux/amd64/v2"}, Emulated: []string{"linux/arm64"}}
	down := State{Node: "arm1", Native: []string{"linux/arm64", "linux/ppc64le"}, LastError: "connection refused"}
	got := map[string]string{}
	for _, r := range Routes([]State{local, down}) {
		got[r.Platform] = r.Node
	}
	want := map[string]string{"linux/amd64": LocalName, "linux/arm64": LocalName, "linux/ppc64le": ""}
	if !maps.Equal(got, want) {
		t.Errorf("routes %v, want %v", got, want)
	}
}
