package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Row is one line of the table and one entry of results.json.
//
// A comparison row has A and B samples taken alternately (A, B, A, B, …),
// one pair per round; Ratio is computed per round (A_i / B_i) and
// summarised by its median, minimum and maximum. A measurement row has no
// B side: Value says what was measured and the samples (if any) are in A.
type Row struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	// A is mabd's side (the command that was timed), B the other one.
	A string `json:"a"`
	B string `json:"b,omitempty"`
	// Unit of the samples: "ms" unless said otherwise.
	Unit string `json:"unit,omitempty"`
	// Samples of each side, in the order they were taken.
	ASamples []float64 `json:"a_samples,omitempty"`
	BSamples []float64 `json:"b_samples,omitempty"`
	AMedian  *float64  `json:"a_median,omitempty"`
	BMedian  *float64  `json:"b_median,omitempty"`
	AMin     *float64  `json:"a_min,omitempty"`
	AMax     *float64  `json:"a_max,omitempty"`
	BMin     *float64  `json:"b_min,omitempty"`
	BMax     *float64  `json:"b_max,omitempty"`
	// Ratios are A_i / B_i per round.
	Ratios      []float64 `json:"ratios,omitempty"`
	RatioMedian *float64  `json:"ratio_median,omitempty"`
	RatioMin    *float64  `json:"ratio_min,omitempty"`
	RatioMax    *float64  `json:"ratio_max,omitempty"`
	// N is the number of rounds (comparisons) or samples (measurements).
	N int `json:"n"`
	// Value is the formatted result of a measurement row (shown in the
	// table's "A" column), or "n/a (why)" when a row could not be measured.
	Value string `json:"value,omitempty"`
	// Values holds a measurement row's figures by name, in numbers.
	Values map[string]float64 `json:"values,omitempty"`
	// Note is extra context (counts, what was checked), shown in the table.
	Note string `json:"note,omitempty"`
	// Detail is more context, in the JSON only.
	Detail string `json:"detail,omitempty"`
	// Error is set when the row could not be measured.
	Error string `json:"error,omitempty"`
}

func ptr(f float64) *float64 { return &f }

// median of xs (xs is not modified); NaN for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// percentile returns the p-th percentile (0 < p <= 100) of xs by the
// nearest-rank method; NaN for none.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	k := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(k, len(s)-1))]
}

// compareRow builds a comparison row from paired samples (same length,
// round i of A paired with round i of B).
func compareRow(id, title, a, b string, as, bs []float64) Row {
	r := Row{ID: id, Title: title, A: a, B: b, Unit: "ms", ASamples: as, BSamples: bs}
	n := min(len(as), len(bs))
	r.N = n
	if n == 0 {
		r.Error = "no samples"
		r.Value = "n/a (no samples)"
		return r
	}
	for i := 0; i < n; i++ {
		if bs[i] > 0 {
			r.Ratios = append(r.Ratios, as[i]/bs[i])
		}
	}
	r.AMedian, r.BMedian = ptr(median(as)), ptr(median(bs))
	r.AMin, r.AMax = ptr(slices.Min(as)), ptr(slices.Max(as))
	r.BMin, r.BMax = ptr(slices.Min(bs)), ptr(slices.Max(bs))
	if len(r.Ratios) > 0 {
		r.RatioMedian = ptr(median(r.Ratios))
		r.RatioMin = ptr(slices.Min(r.Ratios))
		r.RatioMax = ptr(slices.Max(r.Ratios))
	}
	return r
}

// sampleRow builds a measurement row from samples of one side (ms).
func sampleRow(id, title, a string, xs []float64) Row {
	r := Row{ID: id, Title: title, A: a, Unit: "ms", ASamples: xs, N: len(xs)}
	if len(xs) == 0 {
		r.Error = "no samples"
		r.Value = "n/a (no samples)"
		return r
	}
	r.AMedian, r.AMin, r.AMax = ptr(median(xs)), ptr(slices.Min(xs)), ptr(slices.Max(xs))
	if len(xs) == 1 {
		r.Value = fmtMS(xs[0])
	} else {
		r.Value = fmt.Sprintf("%s (%s–%s)", fmtMS(*r.AMedian), fmtNum(*r.AMin), fmtNum(*r.AMax))
	}
	return r
}

// naRow is a row that could not be measured.
func naRow(id, title, a, b, why string) Row {
	return Row{ID: id, Title: title, A: a, B: b, Value: "n/a (" + why + ")", Error: why}
}

// ms converts a duration to float milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fmtNum formats a number with about three significant digits.
func fmtNum(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "n/a"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func fmtMS(v float64) string {
	if v >= 1000 {
		return fmtNum(v/1000) + " s"
	}
	return fmtNum(v) + " ms"
}

func fmtRatio(r Row) string {
	if r.RatioMedian == nil {
		return ""
	}
	return fmt.Sprintf("%s× (%s–%s)", fmtNum(*r.RatioMedian), fmtNum(*r.RatioMin), fmtNum(*r.RatioMax))
}

// cell escapes a table cell.
func cell(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ")
}

// markdown renders the rows as one table.
func markdown(rows []Row) string {
	var b strings.Builder
	b.WriteString("| # | measurement | A (mabd) | B | A median | B median | A/B median (min–max) | n |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		am, bm := "", ""
		switch {
		case r.B != "" && r.AMedian != nil && r.Unit == "×":
			am, bm = fmtNum(*r.AMedian)+"×", fmtNum(*r.BMedian)+"×"
		case r.B != "" && r.AMedian != nil:
			am, bm = fmtMS(*r.AMedian), fmtMS(*r.BMedian)
		case r.Value != "":
			am = r.Value
		}
		if r.B != "" && r.Value != "" && r.AMedian == nil {
			am = r.Value
		}
		title := r.Title
		if r.Note != "" {
			title += " — " + r.Note
		}
		n := ""
		if r.N > 0 {
			n = fmt.Sprint(r.N)
		}
		b.WriteString("| " + strings.Join([]string{cell(r.ID), cell(title), cell(r.A), cell(orDash(r.B)), cell(am), cell(bm), cell(fmtRatio(r)), n}, " | ") + " |\n")
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// sanitize drops NaN and infinite figures, which JSON cannot carry.
func sanitize(rows []Row) {
	bad := func(p *float64) *float64 {
		if p == nil || math.IsNaN(*p) || math.IsInf(*p, 0) {
			return nil
		}
		return p
	}
	for i := range rows {
		r := &rows[i]
		r.AMedian, r.BMedian, r.AMin, r.AMax = bad(r.AMedian), bad(r.BMedian), bad(r.AMin), bad(r.AMax)
		r.BMin, r.BMax = bad(r.BMin), bad(r.BMax)
		r.RatioMedian, r.RatioMin, r.RatioMax = bad(r.RatioMedian), bad(r.RatioMin), bad(r.RatioMax)
		for k, v := range r.Values {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				delete(r.Values, k)
			}
		}
	}
}
