// A line chart of one figure per member over the last minutes (uPlot: small, fast, canvas).
// The chart is rebuilt when the set of members changes and only fed new data otherwise, so a
// once-a-second update costs a redraw, not a new chart.

import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface ChartSeries {
  label: string;
  colour: string;
}

export function LineChart(props: { title: string; unit: string; series: ChartSeries[]; xs: number[]; ys: (number | null)[][]; height?: number }) {
  const { title, unit, series, xs, ys } = props;
  const height = props.height ?? 180;
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const seriesKey = series.map((s) => `${s.label}=${s.colour}`).join(",");

  useEffect(() => {
    const el = box.current;
    if (el === null) return;
    const p = new uPlot(
      {
        width: Math.max(200, el.clientWidth),
        height,
        legend: { show: true, live: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
        axes: [{ stroke: "#333" }, { stroke: "#333", size: 60, values: (_u, splits) => splits.map((v) => (v >= 10_000 ? `${Math.round(v / 1000)}k` : String(Math.round(v * 10) / 10))) }],
        series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.colour, width: 2, spanGaps: false, value: (_u: uPlot, v: number | null) => (v === null ? "–" : `${Math.round(v)} ${unit}`) }))],
      },
      [xs, ...ys] as uPlot.AlignedData,
      el,
    );
    plot.current = p;
    const observer = new ResizeObserver(() => p.setSize({ width: Math.max(200, el.clientWidth), height }));
    observer.observe(el);
    return () => {
      observer.disconnect();
      p.destroy();
      plot.current = null;
    };
    // Rebuilt only when the members (or their colours) change; data flows in below.
  }, [seriesKey, height]);

  useEffect(() => {
    plot.current?.setData([xs, ...ys] as uPlot.AlignedData);
  }, [xs, ys]);

  const latest = series.map((s, i) => `${s.label} ${ys[i]?.[ys[i]!.length - 1] ?? "no data"}`).join(", ");
  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <div ref={box} role="img" aria-label={`${title}, latest: ${latest}`} />
    </figure>
  );
}
