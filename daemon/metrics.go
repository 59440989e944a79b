package daemon

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the daemon's Prometheus metrics, on its own registry.
type metrics struct {
	registry   *prometheus.Registry
	repairs    *prometheus.CounterVec
	reconciles prometheus.Counter
	conflicts  prometheus.Gauge
	verified   *prometheus.GaugeVec
	verifies   prometheus.Counter
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
			Name: "mabd_conflicts", Help: "Handlers left alone because another definition holds their name.",
		}),
		verified: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mabd_platform_verified", Help: "1 when the last verification of the platform passed (ok or native), 0 when it failed.",
		}, []string{"platform", "qemu_arch"}),
		verifies: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mabd_verifications_total", Help: "Verification runs.",
		}),
	}
	m.registry.MustRegister(m.repairs, m.reconciles, m.conflicts, m.verified, m.verifies,
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mabd_uptime_seconds", Help: "Seconds since the daemon started.",
		}, func() float64 { return d.uptime().Seconds() }),
	)
	return m
}

func (m *metrics) observeVerification(v *Verification) {
	m.verifies.Inc()
	for _, r := range v.Results {
		ok := 0.0
		if r.State != "failed" {
			ok = 1
		}
		m.verified.WithLabelValues(r.Platform, r.QEMUArch).Set(ok)
	}
}
