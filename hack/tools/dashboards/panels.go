/*
Copyright The Flowscope Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package main

import (
	"github.com/grafana/grafana-foundation-sdk/go/bargauge"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/nodegraph"
	"github.com/grafana/grafana-foundation-sdk/go/piechart"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/text"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Every query goes to the data source the dashboard's variable selects.
func datasource() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}
}

// target is one PromQL query of a panel.
type target struct {
	refID, expr, legend string
	instant, table      bool
}

func (t target) build() cog.Builder[variants.Dataquery] {
	refID := t.refID
	if refID == "" {
		refID = "A"
	}
	q := prometheus.NewDataqueryBuilder().Datasource(datasource()).RefId(refID).Expr(t.expr)
	if t.legend != "" {
		q = q.LegendFormat(t.legend)
	}
	if t.instant {
		q = q.Instant()
	} else {
		q = q.Range()
	}
	if t.table {
		q = q.Format(prometheus.PromQueryFormatTable)
	}
	return q
}

func targets(ts []target) []cog.Builder[variants.Dataquery] {
	out := make([]cog.Builder[variants.Dataquery], len(ts))
	for i, t := range ts {
		out[i] = t.build()
	}
	return out
}

// statPanel: one number over the dashboard's time range.
func statPanel(title, description, unit, expr string) cog.Builder[dashboard.Panel] {
	return stat.NewPanelBuilder().Title(title).Description(description).Datasource(datasource()).
		Unit(unit).NoValue("0").Height(4).Span(4).
		GraphMode(common.BigValueGraphModeNone).ColorMode(common.BigValueColorModeValue).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
		Targets(targets([]target{{expr: expr, instant: true}}))
}

// timeseriesPanel: rates over time, one line per legend, half the width.
func timeseriesPanel(title, description, unit string, ts ...target) cog.Builder[dashboard.Panel] {
	return timeseriesOfWidth(12, title, description, unit, ts...)
}

// narrowTimeseriesPanel: a third of the width, beside two top panels.
func narrowTimeseriesPanel(title, description, unit string, ts ...target) cog.Builder[dashboard.Panel] {
	return timeseriesOfWidth(8, title, description, unit, ts...)
}

func timeseriesOfWidth(width uint32, title, description, unit string, ts ...target) cog.Builder[dashboard.Panel] {
	return timeseries.NewPanelBuilder().Title(title).Description(description).Datasource(datasource()).
		Unit(unit).Height(8).Span(width).Min(0).FillOpacity(10).
		Legend(common.NewVizLegendOptionsBuilder().ShowLegend(true).DisplayMode(common.LegendDisplayModeTable).
			Placement(common.LegendPlacementRight).Calcs([]string{"mean", "max"})).
		Targets(targets(ts))
}

// topPanel: the k largest series over the dashboard's time range, as bars.
func topPanel(title, description, unit, expr, legend string) cog.Builder[dashboard.Panel] {
	return bargauge.NewPanelBuilder().Title(title).Description(description).Datasource(datasource()).
		Unit(unit).Height(8).Span(8).Min(0).
		DisplayMode(common.BarGaugeDisplayModeGradient).Orientation(common.VizOrientationHorizontal).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
		Targets(targets([]target{{expr: expr, legend: legend, instant: true}}))
}

// piePanel: shares of a whole over the dashboard's time range.
func piePanel(title, description, unit, expr, legend string) cog.Builder[dashboard.Panel] {
	return piechart.NewPanelBuilder().Title(title).Description(description).Datasource(datasource()).
		Unit(unit).Height(8).Span(12).PieType(piechart.PieChartTypeDonut).
		DisplayLabels([]piechart.PieChartLabels{piechart.PieChartLabelsPercent}).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
		Targets(targets([]target{{expr: expr, legend: legend, instant: true}}))
}

// graphPanel: Grafana's node graph fed by two table queries, refIds
// "nodes" and "edges", whose labels are the frames' fields (id, title,
// subtitle; id, source, target) and whose values become mainstat.
// Prometheus names a table's value "Value #<refId>" when the response has
// more than one frame, else "Value"; the organize step renames them all.
func graphPanel(title, description, nodes, edges string) cog.Builder[dashboard.Panel] {
	return nodegraph.NewPanelBuilder().Title(title).Description(description).Datasource(datasource()).
		Height(14).Span(24).
		Nodes(nodegraph.NewNodeOptionsBuilder().MainStatUnit("reqps")).
		Edges(nodegraph.NewEdgeOptionsBuilder().MainStatUnit("reqps")).
		Targets(targets([]target{
			{refID: "nodes", expr: nodes, instant: true, table: true},
			{refID: "edges", expr: edges, instant: true, table: true},
		})).
		WithTransformation(dashboard.DataTransformerConfig{
			Id: "organize",
			Options: map[string]any{
				"excludeByName": map[string]bool{"Time": true},
				"renameByName":  map[string]string{"Value": "mainstat", "Value #nodes": "mainstat", "Value #edges": "mainstat"},
			},
		})
}

// textPanel: markdown, for what Prometheus cannot serve.
func textPanel(title, content string) cog.Builder[dashboard.Panel] {
	return text.NewPanelBuilder().Title(title).Height(8).Span(12).
		Mode(text.TextModeMarkdown).Content(content)
}
