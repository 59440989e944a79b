package daemon

import (
	"context"
	"mabd/builder"
	"mabd/emulator"
	"mabd/host"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the daemon's Prometheus metrics, on its own registry.
type metrics struct {
	registry   *prometheus.Registry
	repairs    *prometheus.CounterVec
	reconciles prometheus.Counter
	conflicts  prometheus.Gauge
	served     prometheus.Gauge
	verified   *prometheus.GaugeVec
	verifies   prometheus.Counter
	switches   *prometheus.CounterVec
}

func newMetrics(d *Daemon) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mabd_repairs_total", Help: "Handlers the reconcile loop restored, by action (registered, enabled, replaced).",
		}, []string{"action"}),
		reconciles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mabd_reconciles_total", Help: "Reconcile passes run.",
		}),
		conflicts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mabd_conflicts", Help: "Handlers left alone because another tool's entry that does not serve the architecture holds their name.",
		}),
		served: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mabd_served_by_others", Help: "Configured handlers served by another tool's entry of the same name that runs the architecture's programs (left alone).",
		}),
		verified: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mabd_platform_verified", Help: "1 when the last verification of the platform passed (ok or native), 0 when it failed.",
		}, []string{"platform", "qemu_arch"}),
		verifies: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mabd_verifications_total", Help: "Verification runs.",
		}),
		switches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mabd_emulator_switches_total", Help: "Handlers moved to another candidate emulator because the one registered failed or changed and another passed, by architecture.",
		}, []string{"qemu_arch"}),
	}
	m.registry.MustRegister(m.repairs, m.reconciles, m.conflicts, m.served, m.verified, m.verifies, m.switches, builderCollector{d}, fleetCollector{d},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mabd_healthy", Help: "1 when the daemon's status is healthy (what /healthz answers 200 for), 0 when degraded.",
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if st, err := d.Status(ctx); err == nil && st.Healthy() {
				return 1
			}
			return 0
		}),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mabd_uptime_seconds", Help: "Seconds since the daemon started.",
		}, func() float64 { return d.uptime().Seconds() }),
	)
	return m
}

func (m *metrics) observeVerification(v *host.Verification) {
	m.verifies.Inc()
	for _, r := range v.Results {
		ok := 0.0
		if r.State != emulator.StateFailed {
			ok = 1
		}
		m.verified.WithLabelValues(r.Platform, r.QEMUArch).Set(ok)
	}
}

// builderCollector reports the builder's private binfmt_misc instance as
// the last verification inside its namespace found it.
type builderCollector struct{ d *Daemon }

var (
	builderVerifiedDesc = prometheus.NewDesc("mabd_builder_platform_verified",
		"1 when the handler of the platform passed the last verification in the builder's private namespace (or the platform is native), 0 when it failed and the worker goes without it.",
		[]string{"platform", "handler"}, nil)
	builderWithdrawnDesc = prometheus.NewDesc("mabd_builder_withdrawn_total",
		"Private handlers that failed a verification while buildkitd ran and were withdrawn from the worker.", nil, nil)
)

func (c builderCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- builderVerifiedDesc
	ch <- builderWithdrawnDesc
}

func (c builderCollector) Collect(ch chan<- prometheus.Metric) {
	bk := c.d.buildkit()
	if bk == nil {
		return
	}
	st := bk.Status()
	if st.Emulation != builder.EmulationPrivate {
		return
	}
	for _, h := range st.Private {
		ok := 1.0
		if h.State == emulator.StateFailed {
			ok = 0
		}
		ch <- prometheus.MustNewConstMetric(builderVerifiedDesc, prometheus.GaugeValue, ok, h.Platform, h.Name)
	}
	ch <- prometheus.MustNewConstMetric(builderWithdrawnDesc, prometheus.CounterValue, float64(st.Withdrawn))
}

// fleetCollector reports the fleet's nodes as their last checks found
// them, and the route each platform would take now; nothing when
// [fleet.nodes] names no node.
type fleetCollector struct{ d *Daemon }

var (
	fleetUpDesc = prometheus.NewDesc("mabd_fleet_node_up",
		"1 when the BuildKit node answered its last check with a worker, 0 when it is down.", []string{"node", "address"}, nil)
	fleetLatencyDesc = prometheus.NewDesc("mabd_fleet_node_latency_seconds",
		"How long the node took to list its workers at its last check.", []string{"node"}, nil)
	fleetActiveDesc = prometheus.NewDesc("mabd_fleet_node_active_builds",
		"Builds the node ran at its last check.", []string{"node"}, nil)
	fleetRouteDesc = prometheus.NewDesc("mabd_fleet_route",
		"1 for the node a platform would be built on now, native or emulated; a platform no healthy node builds has node=\"\".", []string{"platform", "node", "native"}, nil)
)

func (c fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- fleetUpDesc
	ch <- fleetLatencyDesc
	ch <- fleetActiveDesc
	ch <- fleetRouteDesc
}

func (c fleetCollector) Collect(ch chan<- prometheus.Metric) {
	fi := c.d.Fleet(context.Background(), false)
	if !fi.Remote() {
		return
	}
	for _, st := range fi.States {
		up := 0.0
		if st.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(fleetUpDesc, prometheus.GaugeValue, up, st.Node, st.Address)
		if st.Up {
			ch <- prometheus.MustNewConstMetric(fleetLatencyDesc, prometheus.GaugeValue, st.LatencyMS/1000, st.Node)
			ch <- prometheus.MustNewConstMetric(fleetActiveDesc, prometheus.GaugeValue, float64(st.Active), st.Node)
		}
	}
	for _, r := range fi.Routes {
		ch <- prometheus.MustNewConstMetric(fleetRouteDesc, prometheus.GaugeValue, 1, r.Platform, r.Node, strconv.FormatBool(r.Native))
	}
}
